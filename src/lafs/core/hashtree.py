"""Tahoe's Merkle hash trees: build a full tree, or verify one as its pieces arrive.

The tree is a flat list in breadth-first order, root first: node ``j`` has
children ``2j+1`` and ``2j+2``.  The leaves are padded up to a power of two with
``empty_leaf_hash(position)``, so a tree over ``n`` leaves has ``2P-1`` nodes and
its leaves sit at indices ``P-1 .. 2P-2``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from lafs.core.errors import LafsError
from lafs.core.hashes import empty_leaf_hash, internal_node_hash


class BadHashError(LafsError):
    """A hash or leaf that does not chain up to the trusted root."""


class NotEnoughHashesError(LafsError):
    """A hash that cannot be checked yet because a sibling on its path is missing."""


class HashTreeIndexError(LafsError, IndexError):
    """A leaf number or node index outside the tree (an IndexError, as in Tahoe)."""


def leaf_count_padded(num_leaves: int) -> int:
    """The number of leaf slots: ``num_leaves`` rounded up to a power of two (at least 1)."""
    padded = 1
    while padded < num_leaves:
        padded *= 2
    return padded


def tree_size(num_leaves: int) -> int:
    """The number of nodes (hashes) in the flat list of a tree over ``num_leaves`` leaves."""
    return 2 * leaf_count_padded(num_leaves) - 1


def _check_node_index(index: int, size: int) -> None:
    # Negative indices would silently wrap around in a list; a tree has none.
    if not 0 <= index < size:
        raise HashTreeIndexError(f"hash node {index} is outside a tree of {size} nodes")


def _sibling(index: int) -> int:
    return index + 1 if index % 2 == 1 else index - 1


def _parent(index: int) -> int:
    return (index - 1) // 2


class _TreeShape:
    def __init__(self, num_leaves: int) -> None:
        if num_leaves < 0:
            raise HashTreeIndexError(f"a hash tree cannot have {num_leaves} leaves")
        self.num_leaves = num_leaves
        self.first_leaf_num = leaf_count_padded(num_leaves) - 1
        self.size = 2 * self.first_leaf_num + 1

    def get_leaf_index(self, leafnum: int) -> int:
        """The flat-list index of leaf ``leafnum``."""
        if not 0 <= leafnum <= self.first_leaf_num:
            raise HashTreeIndexError(f"leaf {leafnum} is outside a tree of {self.first_leaf_num + 1} leaf slots")
        return self.first_leaf_num + leafnum

    def uncle_chain(self, leafnum: int, include_leaf: bool) -> set[int]:
        """Siblings of every node on the path from the leaf to the root (root excluded)."""
        index = self.get_leaf_index(leafnum)
        needed = {index} if include_leaf else set()
        while index > 0:
            needed.add(_sibling(index))
            index = _parent(index)
        return needed


class HashTree(_TreeShape):
    """A complete tree built from all its leaves."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        super().__init__(len(leaves))
        padded = list(leaves) + [empty_leaf_hash(i) for i in range(len(leaves), self.first_leaf_num + 1)]
        nodes: list[bytes] = [b""] * self.first_leaf_num + padded
        for index in range(self.first_leaf_num - 1, -1, -1):
            nodes[index] = internal_node_hash(nodes[2 * index + 1], nodes[2 * index + 2])
        self._nodes = nodes

    @property
    def root(self) -> bytes:
        return self._nodes[0]

    def __getitem__(self, index: int) -> bytes:
        _check_node_index(index, len(self._nodes))
        return self._nodes[index]

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._nodes)

    def as_list(self) -> list[bytes]:
        return list(self._nodes)

    def needed_hashes(self, leafnum: int, include_leaf: bool = False) -> set[int]:
        """The node indices a reader needs, besides the root, to verify leaf ``leafnum``."""
        return self.uncle_chain(leafnum, include_leaf)


class IncompleteHashTree(_TreeShape):
    """A tree whose nodes arrive piecemeal; every node is checked against the root before it is kept."""

    def __init__(self, num_leaves: int) -> None:
        super().__init__(num_leaves)
        self._nodes: list[bytes | None] = [None] * self.size

    @property
    def root(self) -> bytes | None:
        return self._nodes[0]

    def __getitem__(self, index: int) -> bytes | None:
        _check_node_index(index, self.size)
        return self._nodes[index]

    def __len__(self) -> int:
        return self.size

    def get_leaf(self, leafnum: int) -> bytes | None:
        return self._nodes[self.get_leaf_index(leafnum)]

    def needed_hashes(self, leafnum: int, include_leaf: bool = False) -> set[int]:
        """The nodes of the uncle chain (plus the leaf if asked) that are not known yet.

        An empty tree answers exactly like ``HashTree.needed_hashes``; once
        hashes are set, the known ones drop out.  Every known node has its
        whole uncle chain known (``set_hashes`` keeps nothing it could not
        chain to the root), so this is also the minimum set to ask for.
        """
        return {index for index in self.uncle_chain(leafnum, include_leaf) if self._nodes[index] is None}

    def set_hashes(self, hashes: Mapping[int, bytes] | None = None, leaves: Mapping[int, bytes] | None = None) -> None:
        """Add nodes (by flat index) and leaves (by leaf number), keeping them only if all verify.

        The root is trusted: it is the first thing to set (``{0: root}``).
        Every other node given must hash up, through its siblings (given now
        or already known), to a node already known -- ultimately the root.
        A node that does not match raises BadHashError naming it; a node whose
        sibling is missing, or any node while the root is unknown, raises
        NotEnoughHashesError.  On any error nothing given in this call is kept.
        """
        incoming: dict[int, bytes] = {}
        for index, value in (hashes or {}).items():
            if not 0 <= index < self.size:
                raise BadHashError(f"hash node {index} is outside a tree of {self.size} nodes")
            incoming[index] = bytes(value)
        for leafnum, value in (leaves or {}).items():
            if not 0 <= leafnum <= self.first_leaf_num:
                raise BadHashError(f"leaf {leafnum} is outside a tree of {self.first_leaf_num + 1} leaves")
            index = self.first_leaf_num + leafnum
            if index in incoming and incoming[index] != value:
                raise BadHashError(f"leaf {leafnum} and hash node {index} were given different values")
            incoming[index] = bytes(value)
        for index, value in incoming.items():
            known = self._nodes[index]
            if known is not None and known != value:
                raise BadHashError(f"hash node {index} differs from the value already verified")
        tentative = list(self._nodes)
        for index, value in incoming.items():
            tentative[index] = value
        if tentative[0] is None and incoming:
            raise NotEnoughHashesError("the root hash has not been set, so nothing can be verified")
        # Walk up from each new node until reaching a node verified before this
        # call; parents computed on the way are checked against any given value.
        for start in sorted(incoming, reverse=True):
            index = start
            while index > 0 and self._nodes[index] is None:
                sibling = _sibling(index)
                sibling_hash = tentative[sibling]
                if sibling_hash is None:
                    raise NotEnoughHashesError(f"cannot verify hash node {start}: hash node {sibling} is missing")
                own = tentative[index]
                assert own is not None  # set by the loop or the caller before we got here
                left, right = (own, sibling_hash) if index % 2 == 1 else (sibling_hash, own)
                computed = internal_node_hash(left, right)
                parent = _parent(index)
                if tentative[parent] is None:
                    tentative[parent] = computed
                elif tentative[parent] != computed:
                    raise BadHashError(
                        f"hash node {start} does not chain up to the root: "
                        f"nodes {_left_index(index)}+{_left_index(index) + 1} do not hash to node {parent}"
                    )
                index = parent
        self._nodes = tentative


def _left_index(index: int) -> int:
    """The left one of ``index`` and its sibling."""
    return index if index % 2 == 1 else index - 1
