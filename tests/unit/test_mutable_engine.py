"""Pure pieces of the mutable engine: key derivation, encoding, placement, tree checks.

The known answers are shares the real Tahoe-LAFS 1.20 published
(``data/mutable_tahoe_shares.json``, made by its ``_producer.py.txt``): with
the same key, plaintext and salts our encoder must produce the same bytes,
except the RSA-PSS signature, which is randomised.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import base32, caps, crypto
from lafs.core.errors import FormatError
from lafs.core.mutable_layout import (
    MDMFShare,
    MutableShareLayoutError,
    MutableVersionInfo,
    SDMFShare,
)
from lafs.mutable.common import CapKeys, WriteKeys, decrypt_private_key, write_secrets
from lafs.mutable.encode import ShareCorruptError, check_block_tree, encode_mdmf, encode_sdmf
from lafs.mutable.publish import place_shares
from lafs.mutable.servermap import ServerMap, _verify_head

VECTORS = json.loads((Path(__file__).parent / "data" / "mutable_tahoe_shares.json").read_text())


def plaintext(n: int) -> bytes:
    # The producer's formula.
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def vector(name: str) -> tuple[dict[str, object], WriteKeys, dict[int, bytes]]:
    v = VECTORS[name]
    keys = WriteKeys.from_private_key(base64.b64decode(v["private_key_der"]))
    shares = {int(n): base64.b64decode(s) for n, s in v["shares"].items()}
    return v, keys, shares


@pytest.mark.parametrize("name", ["sdmf", "mdmf"])
def test_keys_and_caps_match_real_tahoe(name: str) -> None:
    v, keys, shares = vector(name)
    cap = keys.write_cap(mdmf=name == "mdmf")
    assert cap.to_string() == v["write_cap"]
    assert cap.get_readonly().to_string() == v["read_cap"]
    assert keys.storage_index == caps.from_string(v["read_cap"]).get_storage_index()  # type: ignore[union-attr]
    some_share = next(iter(shares.values()))
    parsed = (MDMFShare if name == "mdmf" else SDMFShare).unpack(some_share)
    assert parsed.verification_key == keys.public_key
    assert parsed.enc_privkey == keys.enc_privkey
    assert decrypt_private_key(keys.writekey, parsed.enc_privkey) == keys.private_key
    assert decrypt_private_key(keys.writekey, parsed.enc_privkey[:-1] + b"\x00") is None
    crypto.rsa_verify(keys.public_key, parsed.info.signed_prefix(), parsed.signature)


def _without_signature(share: bytes, mdmf: bool) -> tuple[bytes, bytes]:
    if mdmf:
        o = MDMFShare.unpack(share).offsets()
        start, end = o.signature, o.verification_key
    else:
        parsed = SDMFShare.unpack(share)
        start = 107 + len(parsed.verification_key)
        end = start + len(parsed.signature)
    return share[:start], share[end:]


def test_sdmf_encoding_matches_real_tahoe() -> None:
    v, keys, shares = vector("sdmf")
    iv = SDMFShare.unpack(shares[0]).info.salt
    ours = encode_sdmf(plaintext(int(v["size"])), keys, 1, 3, 10, iv)  # type: ignore[call-overload]
    assert sorted(shares) == list(range(10))
    for shnum, theirs in shares.items():
        assert _without_signature(ours.shares[shnum], False) == _without_signature(theirs, False)


def test_mdmf_encoding_matches_real_tahoe() -> None:
    v, keys, shares = vector("mdmf")
    theirs0 = MDMFShare.unpack(shares[0])
    block = theirs0.info.segment_size // 3
    salts = [theirs0.share_data[i * (16 + block) : i * (16 + block) + 16] for i in range(2)]
    ours = encode_mdmf(plaintext(int(v["size"])), keys, 1, 3, 10, iter(salts).__next__)  # type: ignore[call-overload]
    for shnum, theirs in shares.items():
        assert len(ours.shares[shnum]) == len(theirs)
        assert _without_signature(ours.shares[shnum], True) == _without_signature(theirs, True)


def test_write_enabler_and_lease_secrets() -> None:
    # facts 13.4: the renew secret for raw inputs, from Tahoe's derive_renewal_secret.py.
    @attrs.frozen
    class Server:
        lease_seed: bytes

    we, renew, cancel = write_secrets(b"w" * 16, b"storage indexxxx", b"lease secret" + b"x" * 20, Server(b"tub idxxxxxxxxxxxxxx"))  # type: ignore[arg-type]
    assert base32.b2a(renew) == "fo3okyiliocn5p25agoljcoieychxim3vp4wa6am263fc7w5xgwq"
    assert len(we) == len(cancel) == 32 and len({we, renew, cancel}) == 3


def test_block_tree_check_rejects_tampering() -> None:
    _, _, shares = vector("mdmf")
    share = MDMFShare.unpack(shares[5])
    leaves = check_block_tree(share.info, 5, share.block_hash_tree, share.share_hash_chain)
    assert len(leaves) == 2
    bad_tree = list(share.block_hash_tree)
    bad_tree[-1] = b"\x00" * 32
    with pytest.raises(ShareCorruptError, match="not consistent"):
        check_block_tree(share.info, 5, bad_tree, share.share_hash_chain)
    with pytest.raises(ShareCorruptError, match="expected 3"):
        check_block_tree(share.info, 5, share.block_hash_tree[:2], share.share_hash_chain)
    with pytest.raises(ShareCorruptError, match="signed root"):
        check_block_tree(share.info, 4, share.block_hash_tree, share.share_hash_chain)
    chain = dict(share.share_hash_chain)
    chain[min(chain)] = b"\x01" * 32
    with pytest.raises(ShareCorruptError, match="signed root"):
        check_block_tree(share.info, 5, share.block_hash_tree, chain)


@attrs.frozen
class FakeServer:
    server_id: str
    lease_seed: bytes = b"x" * 20


@pytest.mark.parametrize("count", [1, 3, 4, 10, 12])
def test_placement_new_file(count: int) -> None:
    servers = [FakeServer(f"s{i}") for i in range(count)]
    servermap = ServerMap(b"i" * 16, servers)  # type: ignore[arg-type]
    placed = place_shares(servermap, 10)
    assert sorted(shnum for _, shnum in placed) == list(range(10))
    # One per server in ring order, wrapping when there are fewer servers than shares.
    assert [s.server_id for s, _ in placed] == [servers[i % count].server_id for i in range(10)]


def test_placement_keeps_existing_shares_and_skips_failed_servers() -> None:
    servers = [FakeServer(f"s{i}") for i in range(5)]
    servermap = ServerMap(b"i" * 16, servers)  # type: ignore[arg-type]
    servermap.checkstrings = {("s3", 0): b"old", ("s3", 1): b"old", ("s4", 7): b"older"}
    servermap.failed_servers = {"s1"}
    placed = {(s.server_id, n) for s, n in place_shares(servermap, 4)}
    assert {("s3", 0), ("s3", 1)} <= placed
    assert ("s4", 7) not in placed  # beyond N: left alone
    assert all(server_id != "s1" for server_id, _ in placed)
    homeless = sorted((sid, n) for sid, n in placed if n in (2, 3))
    assert homeless == [("s0", 2), ("s2", 3)]


@given(
    st.integers(0, 2**64 - 1),
    st.integers(1, 255).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))),
    st.binary(max_size=1300),
    st.dictionaries(st.integers(0, 300), st.binary(min_size=32, max_size=32), max_size=8),
    st.binary(max_size=300),
    st.binary(max_size=295),
    st.binary(max_size=500),
    st.lists(st.binary(min_size=32, max_size=32), max_size=5),
)
def test_mdmf_share_round_trip(
    seqnum: int,
    kn: tuple[int, int],
    privkey: bytes,
    chain: dict[int, bytes],
    signature: bytes,
    vk: bytes,
    data: bytes,
    tree: list[bytes],
) -> None:
    info = MutableVersionInfo(1, seqnum, b"r" * 32, b"", kn[0], kn[1], 131073, len(data))
    share = MDMFShare(info, privkey, chain, signature, vk, data, tree)
    try:
        packed = share.pack()
    except MutableShareLayoutError:
        assert len(privkey) + 34 * len(chain) + len(signature) + len(vk) > 2044
        return
    assert MDMFShare.unpack(packed) == share


@given(st.binary(max_size=3000))
def test_mdmf_garbage_raises_layout_error(data: bytes) -> None:
    try:
        MDMFShare.unpack(b"\x01" + data)
    except MutableShareLayoutError:
        pass


def _head_keys() -> tuple[CapKeys, bytes]:
    v, _, shares = vector("mdmf")
    cap = caps.from_string(v["read_cap"])  # type: ignore[arg-type]
    assert isinstance(cap, caps.MutableReadCap)
    return CapKeys.from_cap(cap), shares[0]


@given(st.integers(0, 2200), st.integers(1, 255), st.integers(100, 4000))
def test_share_head_check_rejects_any_flipped_byte_or_truncation(position: int, mask: int, cut: int) -> None:
    """A flipped byte in the signed or key-material part of a share, or a truncation, is refused with our errors."""
    keys, share = _head_keys()
    good, need = _verify_head(keys, FakeServer("s"), 0, share[:4000])  # type: ignore[arg-type]
    assert good is not None and need is None
    damaged = bytearray(share[:4000])
    damaged[position] ^= mask
    for data in (bytes(damaged), share[:cut]):
        try:
            record, _ = _verify_head(keys, FakeServer("s"), 0, data)  # type: ignore[arg-type]
        except (FormatError, crypto.BadSignatureError):
            continue
        # Accepted only when the damage missed everything the head check covers
        # (the encrypted private key and chain are checked later, by their own hashes).
        assert record is not None
        assert record.info == good.info and record.signature == good.signature


@given(st.binary(max_size=600), st.sampled_from([b"\x00", b"\x01"]))
def test_share_head_check_on_garbage(data: bytes, version: bytes) -> None:
    keys, _ = _head_keys()
    try:
        _verify_head(keys, FakeServer("s"), 0, version + data)  # type: ignore[arg-type]
    except (FormatError, crypto.BadSignatureError):
        pass


def test_write_answer_surprises() -> None:
    """A share in a write answer that the writer neither wrote nor knew of means another writer is at work."""
    from lafs.mutable.publish import _WriteOutcome

    outcome = _WriteOutcome({("s1", 0): b"old-checkstring", ("s1", 1): b"old-checkstring"}, b"new-checkstring")
    outcome.check_reads("s1", {0}, {0: [b"old-checkstring"], 1: [b"old-checkstring"]})
    assert outcome.surprises == []
    outcome.check_reads("s1", {0}, {1: [b"someone-elses!!"]})
    assert outcome.surprises == ["s1"]
    outcome.check_reads("s2", {3}, {4: [b"anything"]})
    assert outcome.surprises == ["s1", "s2"]


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "src" / "lafs" / "mutable").glob("*.py")), ids=lambda p: p.name)
def test_mutable_layer_imports_only_downward(path: Path) -> None:
    """lafs.mutable reaches servers only through the storage-client interface: no client, web, sockets or foolscap."""
    import ast

    forbidden = ("lafs.client", "lafs.web", "lafs.cli", "lafs.dirnode", "lafs.storage.", "lafs.tub", "foolscap", "socket")
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not any(name == f.rstrip(".") or name.startswith(f if f.endswith(".") else f + ".") for f in forbidden), name
