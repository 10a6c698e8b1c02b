"""Merkle trees (facts brief §4.4, §13.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lafs.core import base32
from lafs.core.hashes import empty_leaf_hash, tagged_hash
from lafs.core.hashtree import (
    BadHashError,
    HashTree,
    HashTreeIndexError,
    IncompleteHashTree,
    NotEnoughHashesError,
    tree_size,
)

EXPECTED_3_LEAVES = [
    "vxuqudnucceja4pqkdqy5txapagxubm5moupzqywkbg2jrjkaola",
    "weycjri4jlcaunca2jyx2kr7sbtb7qdriog3f26g5jpc5awfeazq",
    "5ovy3g2wwjnxoqtja4licckxkbqjef4xsjtclk6gxnsl66kvow6a",
    "esd34nbzri75l3j2vwetpk3dvlvsxstkbaktomonrulpks3df3sq",
    "jkxbwa2tppyfax35o72tbjecxvaa4xphma6zbyfbkkku3ed2657a",
    "wfisavaqgab2raihe7dld2qjps4rtxyiubgfs5enziokey2msjwa",
    "t3kza5vwx3tlowdemmgdyigp62ju57qduyfh7uulnfkc7mj2ncrq",
]


def leaves(count: int) -> list[bytes]:
    return [tagged_hash(b"tag", b"%d" % i) for i in range(count)]


def test_three_leaf_tree_vector() -> None:
    tree = HashTree(leaves(3))
    assert [base32.b2a(node) for node in tree] == EXPECTED_3_LEAVES
    assert tree[6] == empty_leaf_hash(3)
    assert tree.root == tree[0]


def test_degenerate_trees() -> None:
    assert HashTree([b"x" * 32]).as_list() == [b"x" * 32]
    assert HashTree([]).as_list() == [empty_leaf_hash(0)]


def test_needed_hashes_vectors() -> None:
    tree = HashTree(leaves(8))
    assert tree.get_leaf_index(0) == 7
    assert tree.needed_hashes(0) == {8, 4, 2}
    assert tree.needed_hashes(0, include_leaf=True) == {7, 8, 4, 2}
    assert tree.needed_hashes(1) == {7, 4, 2}
    assert tree.needed_hashes(7) == {13, 5, 1}
    assert tree.needed_hashes(7, include_leaf=True) == {14, 13, 5, 1}
    # N=10 shares -> a 16-leaf share hash tree; share 0 stores these 5 pairs.
    assert HashTree(leaves(10)).needed_hashes(0, include_leaf=True) == {2, 4, 8, 15, 16}


def test_incomplete_tree_accepts_a_valid_chain() -> None:
    full = HashTree(leaves(8))
    partial = IncompleteHashTree(8)
    partial.set_hashes({0: full.root})
    assert partial.needed_hashes(5, include_leaf=True) == full.needed_hashes(5, include_leaf=True)
    partial.set_hashes({i: full[i] for i in full.needed_hashes(5)}, leaves={5: full[full.get_leaf_index(5)]})
    assert partial.get_leaf(5) == full[12]
    # Leaf 4 arrived as leaf 5's sibling; leaf 6 needs itself and leaf 7 (node 6 is known).
    assert partial.needed_hashes(4, include_leaf=True) == set()
    assert partial.needed_hashes(6, include_leaf=True) == {13, 14}
    partial.set_hashes({14: full[14]}, leaves={6: full[13]})


def test_incomplete_tree_rejects_a_bad_leaf_and_keeps_nothing() -> None:
    full = HashTree(leaves(4))
    partial = IncompleteHashTree(4)
    partial.set_hashes({0: full.root})
    chain = {i: full[i] for i in full.needed_hashes(2)}
    with pytest.raises(BadHashError, match="does not chain up"):
        partial.set_hashes(chain, leaves={2: b"\x00" * 32})
    assert all(partial[i] is None for i in range(1, len(partial)))


def test_incomplete_tree_needs_siblings() -> None:
    full = HashTree(leaves(4))
    partial = IncompleteHashTree(4)
    partial.set_hashes({0: full.root})
    with pytest.raises(NotEnoughHashesError, match="missing"):
        partial.set_hashes(leaves={0: full[3]})


def test_incomplete_tree_rejects_conflicting_and_out_of_range_hashes() -> None:
    full = HashTree(leaves(4))
    partial = IncompleteHashTree(4)
    partial.set_hashes({0: full.root})
    with pytest.raises(BadHashError):
        partial.set_hashes({0: b"\x01" * 32})
    with pytest.raises(BadHashError, match="outside"):
        partial.set_hashes({99: b"\x01" * 32})
    with pytest.raises(BadHashError, match="outside"):
        partial.set_hashes(leaves={9: b"\x01" * 32})


def test_root_must_be_known() -> None:
    full = HashTree(leaves(2))
    partial = IncompleteHashTree(2)
    with pytest.raises(NotEnoughHashesError, match="root"):
        partial.set_hashes({2: full[2]}, leaves={0: full[1]})
    # Nothing was kept; the same pieces are accepted once the root is there.
    assert partial.needed_hashes(0, include_leaf=True) == {1, 2}
    partial.set_hashes({0: full.root})
    partial.set_hashes({2: full[2]}, leaves={0: full[1]})
    assert partial.needed_hashes(1, include_leaf=True) == set()


def test_a_root_given_with_bad_hashes_is_not_kept() -> None:
    full = HashTree(leaves(4))
    partial = IncompleteHashTree(4)
    with pytest.raises(BadHashError, match=r"nodes 1\+2 do not hash to node 0"):
        partial.set_hashes({0: full.root, 2: b"\xff" * 32}, leaves={0: full[3], 1: full[4]})
    assert partial.root is None
    partial.set_hashes({0: full.root, 2: full[2]}, leaves={0: full[3], 1: full[4]})
    assert partial.get_leaf(1) == full[4]


def test_conflicting_leaf_and_hash_in_one_call() -> None:
    full = HashTree(leaves(2))
    partial = IncompleteHashTree(2)
    partial.set_hashes({0: full.root})
    with pytest.raises(BadHashError, match="leaf 0 and hash node 1"):
        partial.set_hashes({1: full[1], 2: full[2]}, leaves={0: full[2]})


def test_indices_outside_the_tree() -> None:
    full = HashTree(leaves(5))
    partial = IncompleteHashTree(5)
    assert len(full) == len(partial) == tree_size(5) == 15
    for bad in (-1, 15):
        with pytest.raises(HashTreeIndexError, match="outside"):
            full[bad]
        with pytest.raises(HashTreeIndexError, match="outside"):
            partial[bad]
    with pytest.raises(IndexError):
        full.needed_hashes(8)
    with pytest.raises(HashTreeIndexError):
        partial.get_leaf(-1)
    with pytest.raises(HashTreeIndexError):
        IncompleteHashTree(-1)
    # The padding leaves are real leaves of the tree (a share hash tree over N=5 has 8).
    assert full.needed_hashes(7, include_leaf=True) == {14, 13, 5, 1}


def test_empty_incomplete_tree_asks_for_what_a_full_tree_gives() -> None:
    for count in (1, 2, 3, 10, 17):
        full = HashTree(leaves(count))
        partial = IncompleteHashTree(count)
        for leafnum in range(count):
            for include_leaf in (False, True):
                expected = full.needed_hashes(leafnum, include_leaf) | {0}
                assert partial.needed_hashes(leafnum, include_leaf) | {0} == expected


@settings(max_examples=60)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=40), st.data())
def test_every_leaf_verifies_and_any_flip_is_caught(leaf_values: list[bytes], data: st.DataObject) -> None:
    full = HashTree(leaf_values)
    leafnum = data.draw(st.integers(0, len(leaf_values) - 1))
    partial = IncompleteHashTree(len(leaf_values))
    partial.set_hashes({0: full.root})
    chain = {i: full[i] for i in full.needed_hashes(leafnum)}
    partial.set_hashes(chain, leaves={leafnum: leaf_values[leafnum]})
    assert partial.get_leaf(leafnum) == leaf_values[leafnum]

    # Flip one bit of any one of the pieces (the leaf or any hash of its chain).
    fresh = IncompleteHashTree(len(leaf_values))
    fresh.set_hashes({0: full.root})
    pieces = {**chain, full.get_leaf_index(leafnum): leaf_values[leafnum]}
    victim = data.draw(st.sampled_from(sorted(pieces)))
    bit = data.draw(st.integers(0, 255))
    value = bytearray(pieces[victim])
    value[bit // 8] ^= 1 << (bit % 8)
    pieces[victim] = bytes(value)
    with pytest.raises(BadHashError):
        fresh.set_hashes(pieces)
    # Nothing was kept: the same pieces are still needed (the root, known, never is).
    assert fresh.needed_hashes(leafnum, include_leaf=True) == full.needed_hashes(leafnum, include_leaf=True) - {0}
