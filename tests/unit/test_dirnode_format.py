"""lafs.core.dirnode_format: Tahoe's serialized directory contents, checked against the real Tahoe 1.20.

The known answers in data/dirnode_vectors.json come from the real Tahoe's dirnode and
node-maker API run as a black box (data/dirnode_vectors_producer.py.txt).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lafs.core import caps
from lafs.core.dirnode_format import (
    Child,
    ChildNameError,
    DirnodeFormatError,
    ExistingChildError,
    MustBeDeepImmutableError,
    NoSuchChildError,
    decrypt_rw_uri,
    delete_child,
    describe_child,
    encrypt_rw_uri,
    make_child,
    pack_children,
    rename_child,
    set_child,
    set_children,
    unpack_children,
    update_metadata,
    validate_name,
)

VECTORS = json.loads((pathlib.Path(__file__).parent / "data" / "dirnode_vectors.json").read_text())
WRITEKEY = bytes.fromhex(VECTORS["writekey"])
CHK = "URI:CHK:aeaqcaibaeaqcaibaeaqcaibae:aibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaiba:3:10:1234"
LIT = "URI:LIT:nbswy3dp"
SSK = "URI:SSK:ambqgaydambqgaydambqgaydam:aqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqca"
SSK_RO = "URI:SSK-RO:iosg2ayya4fhrlkfzsjqywrfaq:aqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqcaibaeaqca"
SUBDIR = caps.DirectoryCap(caps.SSKWriteCap(b"\x09" * 16, b"\x0a" * 32)).to_string()


def _cap(text: str | None) -> str | None:
    """Vector caps: text, or "hex:..." for bytes that are not UTF-8 (we hold those surrogate-escaped)."""
    if text is not None and text.startswith("hex:"):
        return bytes.fromhex(text[4:]).decode("utf-8", "surrogateescape")
    return text


def _listing(children: dict[str, Child], *, deep_immutable: bool, writable: bool) -> dict[str, Any]:
    """What we would list: Tahoe hides the children whose caps make an erroring node."""
    out = {}
    for name, child in children.items():
        described = describe_child(child, deep_immutable=deep_immutable, writable=writable)
        if described.error is None:
            out[name] = {"write_uri": described.write_uri, "read_uri": described.read_uri,
                         "metadata": child.metadata}
    return out


def _tahoe_listing(listing: dict[str, Any]) -> dict[str, Any]:
    return {name: {"write_uri": _cap(entry["write_uri"]), "read_uri": _cap(entry["read_uri"]),
                   "metadata": entry["metadata"]} for name, entry in listing.items()}


def _children(inputs: list[Any], *, deep_immutable: bool) -> list[Child]:
    return [make_child(name, write, read, metadata, deep_immutable=deep_immutable)
            for name, write, read, metadata in inputs]


def _entry(name: bytes, ro: bytes, rwcapdata: bytes = b"", metadata: bytes = b"{}") -> bytes:
    fields = b"".join(b"%d:%s," % (len(f), f) for f in (name, ro, rwcapdata, metadata))
    return b"%d:%s," % (len(fields), fields)


# --- known answers from the real Tahoe -------------------------------------------------


def test_pack_matches_real_tahoe_for_a_mutable_directory() -> None:
    """Same children and writekey: byte-identical plaintext (NFC names, sorting, salts, MACs, JSON)."""
    vector = VECTORS["mutable"]
    packed = pack_children(_children(vector["input"], deep_immutable=False), WRITEKEY)
    assert packed.hex() == vector["packed"]


def test_pack_matches_real_tahoe_for_an_immutable_directory() -> None:
    vector = VECTORS["immutable"]
    packed = pack_children(_children(vector["input"], deep_immutable=True), None, deep_immutable=True)
    assert packed.hex() == vector["packed"]


def test_empty_directory_is_empty_bytes() -> None:
    assert VECTORS["empty"] == ""
    assert pack_children([], WRITEKEY) == b""
    assert unpack_children(b"", WRITEKEY) == {}


@pytest.mark.parametrize("writable", [True, False], ids=["write cap", "read cap"])
def test_unpack_lists_what_real_tahoe_lists(writable: bool) -> None:
    vector = VECTORS["mutable"]
    data = bytes.fromhex(vector["packed"])
    children = unpack_children(data, WRITEKEY if writable else None)
    expected = vector["listing_rw" if writable else "listing_ro"]
    assert _listing(children, deep_immutable=False, writable=writable) == _tahoe_listing(expected)


def test_unpack_immutable_lists_what_real_tahoe_lists() -> None:
    vector = VECTORS["immutable"]
    children = unpack_children(bytes.fromhex(vector["packed"]), None, deep_immutable=True)
    assert _listing(children, deep_immutable=True, writable=False) == _tahoe_listing(vector["listing"])


@pytest.mark.parametrize("which", ["mutable", "immutable"])
def test_real_tahoe_bytes_survive_unpack_and_pack(which: str) -> None:
    """Unknown caps included: nothing is dropped or rewritten on the way through."""
    data = bytes.fromhex(VECTORS[which]["packed"])
    deep = which == "immutable"
    key = None if deep else WRITEKEY
    assert pack_children(unpack_children(data, key, deep_immutable=deep), key, deep_immutable=deep) == data


@pytest.mark.parametrize("label", sorted(VECTORS["raw_entries"]))
@pytest.mark.parametrize("mode", ["rw", "ro", "imm"])
def test_hand_built_entries_read_as_real_tahoe_reads_them(label: str, mode: str) -> None:
    """Odd stored entries (prefixes, broken caps, write caps in the read slot...) and Tahoe's view of them."""
    vector = VECTORS["raw_entries"][label]
    data = bytes.fromhex(vector["data"])
    deep = mode == "imm"
    key = WRITEKEY if mode == "rw" else None
    expected = vector[mode]
    if "error" in expected:
        with pytest.raises(DirnodeFormatError):
            unpack_children(data, key, deep_immutable=deep)
        return
    children = unpack_children(data, key, deep_immutable=deep)
    # Tahoe's read-only view lists a write cap found in the read slot; ours never does.
    if mode == "ro" and label == "ro slot holds a write cap":
        expected = {"a": dict(expected["a"], write_uri=None, read_uri=SSK_RO)}
    assert _listing(children, deep_immutable=deep, writable=mode == "rw") == _tahoe_listing(expected)


@pytest.mark.parametrize("label", sorted(VECTORS["bad_entries"]))
def test_contents_real_tahoe_cannot_read_raise_our_error(label: str) -> None:
    vector = VECTORS["bad_entries"][label]
    assert vector["error"] is not None
    with pytest.raises(DirnodeFormatError):
        unpack_children(bytes.fromhex(vector["data"]), WRITEKEY)


@pytest.mark.parametrize("case", range(len(VECTORS["update_metadata"])))
def test_update_metadata_matches_real_tahoe(case: int) -> None:
    """Same keys, values and key order (the order shows in the packed JSON)."""
    old, new, result = VECTORS["update_metadata"][case]
    assert json.dumps(update_metadata(old, new, 100.5)) == result


@pytest.mark.parametrize(
    "case", VECTORS["from_caps"],
    ids=lambda c: f"{'imm' if c['deep_immutable'] else 'mut'}:{c['write']}:{c['read']}"[:60],
)
def test_caps_are_interpreted_as_real_tahoe_does(case: dict[str, Any]) -> None:
    """(write, read) -> the node's write and read caps, unknown-cap prefixes, or an error."""
    child = Child("n", _cap(case["read"]), _cap(case["write"]))
    described = describe_child(child, deep_immutable=case["deep_immutable"])
    assert (described.error is not None) == case["error"]
    if not case["error"]:
        assert (described.write_uri, described.read_uri) == (case["write_uri"], case["read_uri"])
        assert described.is_unknown == (case["type"] == "UnknownNode")
        assert described.is_directory == (case["type"] == "DirectoryNode")


# --- format rules ----------------------------------------------------------------------


def test_rw_cap_encryption_round_trips_and_is_deterministic() -> None:
    data = encrypt_rw_uri(WRITEKEY, SSK.encode())
    assert len(data) == 16 + len(SSK) + 32
    assert data == encrypt_rw_uri(WRITEKEY, SSK.encode())
    assert decrypt_rw_uri(WRITEKEY, data) == SSK.encode()
    assert len(encrypt_rw_uri(WRITEKEY, b"")) == 48


def test_repacking_reuses_only_canonical_rwcapdata() -> None:
    # An unchanged child's rwcapdata is reused when packing it again; a slot
    # whose salt or MAC is not what encrypt_rw_uri writes is re-encrypted, as Tahoe does.
    good = encrypt_rw_uri(WRITEKEY, SSK.encode())
    ro = SSK_RO.encode()
    for stored in (good, good[:-1] + bytes([good[-1] ^ 1]), bytes([good[0] ^ 1]) + good[1:]):
        packed = _entry(b"a", ro, stored)
        children = unpack_children(packed, WRITEKEY)
        if stored == good:
            assert children["a"].rw_uri == SSK
            assert pack_children(children, WRITEKEY) == packed
        else:
            assert pack_children(children, WRITEKEY) == pack_children(
                [Child("a", children["a"].ro_uri, children["a"].rw_uri, {})], WRITEKEY
            )
    # Another directory's writekey never reuses this one's slot.
    other = bytes(16)
    children = unpack_children(_entry(b"a", ro, good), WRITEKEY)
    assert pack_children(children, other) == pack_children([Child("a", SSK_RO, SSK, {})], other)


def test_short_rwcapdata_is_refused_by_a_writer() -> None:
    data = _entry(b"a", LIT.encode(), b"xxxxx")
    with pytest.raises(DirnodeFormatError, match="shorter"):
        unpack_children(data, WRITEKEY)
    assert unpack_children(data, None)["a"].ro_uri == LIT


def test_nfd_and_nfc_names_are_one_name() -> None:
    nfd, nfc = "e\u0301te\u0301", "\u00e9t\u00e9"
    packed = pack_children([make_child(nfd, None, CHK)], WRITEKEY)
    assert list(unpack_children(packed, WRITEKEY)) == [nfc]
    with pytest.raises(DirnodeFormatError, match="NFC"):
        pack_children([Child(nfd, CHK), Child(nfc, LIT)], WRITEKEY)


@pytest.mark.parametrize("name", ["\U0001f600", "\u00e9" * 127 + "x", "a b", "\u4e2d\u6587", "x" * 255])
def test_unicode_names_round_trip(name: str) -> None:
    packed = pack_children([make_child(name, SSK, None, {"k": "\u00e9"})], WRITEKEY)
    assert unpack_children(packed, WRITEKEY) == {name: Child(name, SSK_RO, SSK, {"k": "\u00e9"})}


def test_children_are_sorted_by_code_point() -> None:
    names = ["b", "B", "\u00e9", "a", "\U0001f600", "A"]
    packed = pack_children([make_child(n, None, LIT) for n in names], None)
    assert list(unpack_children(packed, None)) == sorted(names)


def test_metadata_json_uses_default_separators_and_ascii_escapes() -> None:
    packed = pack_children([Child("a", LIT, None, {"x": [1, 2], "y": "\u00e9"})], None)
    assert b'{"x": [1, 2], "y": "\\u00e9"}' in packed


def test_unknown_caps_survive_byte_for_byte() -> None:
    """Even cap bytes that are not UTF-8; only trailing spaces go, as in Tahoe."""
    odd = b"x-future:\xff\xfe not utf-8"
    children = unpack_children(_entry(b"a", odd + b"  "), None)
    assert describe_child(children["a"]).is_unknown
    assert pack_children(children, None) == _entry(b"a", odd)


def test_read_only_diminishing() -> None:
    """Through a read-only directory no write cap comes out, even one stored in the read slot."""
    packed = pack_children([make_child("f", SSK, None), make_child("d", SUBDIR, None),
                            Child("odd", SSK, None)], WRITEKEY)
    children = unpack_children(packed, None)
    assert all(child.rw_uri is None for child in children.values())
    for child in children.values():
        described = describe_child(child, writable=False)
        assert described.write_uri is None
        assert described.cap is not None and described.cap.is_readonly()
    assert describe_child(children["d"], writable=False).read_uri == caps.from_string(SUBDIR).get_readonly().to_string()


@pytest.mark.parametrize("write, read", [(SSK, None), (None, SSK_RO), (None, SUBDIR), ("x:rw", "x:ro")])
def test_immutable_directories_refuse_mutable_children(write: str | None, read: str | None) -> None:
    with pytest.raises(MustBeDeepImmutableError):
        make_child("a", write, read, deep_immutable=True)
    with pytest.raises(MustBeDeepImmutableError):
        pack_children([Child("a", read, write)], None, deep_immutable=True)


def test_immutable_directories_accept_immutable_and_unknown_read_caps() -> None:
    children = [make_child(n, None, c, deep_immutable=True)
                for n, c in [("a", CHK), ("b", LIT), ("c", "URI:DIR2-LIT:"), ("d", "future:x")]]
    data = pack_children(children, None, deep_immutable=True)
    assert b"0:," in data
    back = unpack_children(data, None, deep_immutable=True)
    assert describe_child(back["d"], deep_immutable=True).read_uri == "imm.future:x"


def test_immutable_directory_with_rwcapdata_is_refused() -> None:
    with pytest.raises(DirnodeFormatError, match="immutable"):
        unpack_children(pack_children([make_child("a", None, LIT)], WRITEKEY), None, deep_immutable=True)


# --- hypothesis ------------------------------------------------------------------------

# A narrow alphabet keeps generation fast; it still mixes ASCII, accents, CJK and astral characters.
_chars = st.sampled_from("abcXYZ09 ._-:/\u00e9\u0301e\u00fc\u4e2d\U0001f600\x00\x7f") | st.characters(
    max_codepoint=0x3000, exclude_categories=("Cs",)
)
names = st.text(_chars, min_size=1, max_size=30)
known_caps = st.sampled_from([CHK, LIT, SSK, SSK_RO, SUBDIR, "URI:DIR2-LIT:"])
unknown_caps = st.text(_chars, min_size=1, max_size=30).filter(
    lambda t: not t.startswith(("URI:", "ro.", "imm.")) and not t.endswith(" ")
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
metadata = st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@st.composite
def stored_children(draw: st.DrawFn) -> dict[str, Child]:
    import unicodedata

    result = {}
    for name in draw(st.lists(names, max_size=6)):
        name = unicodedata.normalize("NFC", name)
        rw = draw(st.none() | known_caps | unknown_caps)
        ro = draw(st.none() | known_caps | unknown_caps)
        result[name] = Child(name, ro, rw, draw(metadata))
    return result


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(stored_children(), st.binary(min_size=16, max_size=16))
def test_pack_unpack_round_trip(children: dict[str, Child], writekey: bytes) -> None:
    data = pack_children(children, writekey)
    assert unpack_children(data, writekey) == children
    assert pack_children(unpack_children(data, writekey), writekey) == data
    read_only = unpack_children(data, None)
    assert read_only == {n: Child(n, c.ro_uri, None, c.metadata) for n, c in children.items()}


@given(st.binary(max_size=200))
def test_garbage_raises_only_our_error(data: bytes) -> None:
    for key, deep in ((WRITEKEY, False), (None, False), (None, True)):
        try:
            unpack_children(data, key, deep_immutable=deep)
        except DirnodeFormatError:
            pass


@given(st.lists(st.binary(max_size=60), min_size=1, max_size=5))
def test_netstring_shaped_garbage_raises_only_our_error(fields: list[bytes]) -> None:
    entry = b"".join(b"%d:%s," % (len(f), f) for f in fields)
    data = b"%d:%s," % (len(entry), entry)
    try:
        unpack_children(data, WRITEKEY)
    except DirnodeFormatError:
        pass


# --- edits -----------------------------------------------------------------------------


def test_set_child_new_link_gets_both_timestamps() -> None:
    children = set_child({}, make_child("a", None, CHK, {"user": 1}), now=10.0)
    assert children["a"].metadata == {"user": 1, "tahoe": {"linkcrtime": 10.0, "linkmotime": 10.0}}


def test_set_child_replacing_keeps_linkcrtime_and_replaces_user_metadata() -> None:
    children = set_child({}, make_child("a", None, CHK, {"old": 1}), now=10.0)
    children = set_child(children, make_child("a", None, LIT, {"new": 2, "tahoe": {"linkcrtime": 0}}), now=20.0)
    assert children["a"].ro_uri == LIT
    assert children["a"].metadata == {"new": 2, "tahoe": {"linkcrtime": 10.0, "linkmotime": 20.0}}


def test_overwrite_rules() -> None:
    children = set_children({}, [make_child("f", None, CHK), make_child("d", SUBDIR, None)], now=1.0)
    with pytest.raises(ExistingChildError) as info:
        set_child(children, make_child("f", None, LIT), now=2.0, overwrite=False)
    assert info.value.name == "f"
    assert set_child(children, make_child("f", None, LIT), now=2.0, overwrite="only-files")["f"].ro_uri == LIT
    with pytest.raises(ExistingChildError, match="directory"):
        set_child(children, make_child("d", None, LIT), now=2.0, overwrite="only-files")
    assert set_child(children, make_child("d", None, LIT), now=2.0)["d"].ro_uri == LIT
    assert set_child(children, make_child("new", None, LIT), now=2.0, overwrite=False)["new"].ro_uri == LIT


def test_no_write_metadata_links_read_only() -> None:
    children = set_child({}, make_child("f", SSK, None, {"no-write": True}), now=1.0)
    assert children["f"].rw_uri is None
    assert children["f"].ro_uri == SSK_RO


def test_make_child_derives_the_read_slot_from_a_known_write_cap() -> None:
    child = make_child("f", SSK, LIT)
    assert (child.rw_uri, child.ro_uri) == (SSK, SSK_RO)
    assert "URI:SSK:" not in repr(child)
    unknown = make_child("u", "x:rw", "ro.x:ro")
    assert (unknown.rw_uri, unknown.ro_uri) == ("x:rw", "x:ro")
    with pytest.raises(caps.CapError):
        make_child("u", "x:rw", None)
    with pytest.raises(caps.CapError):
        make_child("u", None, None)


@pytest.mark.parametrize("name", ["", "a/b", "/"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ChildNameError):
        validate_name(name)
    with pytest.raises(ChildNameError):
        make_child(name, None, LIT)
    with pytest.raises(ChildNameError):
        rename_child({"a": Child("a", LIT)}, "a", name, now=1.0)


def test_delete_child() -> None:
    children = {"a": Child("a", LIT), "b": Child("b", CHK)}
    remaining, removed = delete_child(children, "a")
    assert remaining == {"b": Child("b", CHK)} and removed == Child("a", LIT)
    assert "a" in children
    with pytest.raises(NoSuchChildError) as info:
        delete_child(children, "zz")
    assert info.value.name == "zz"


def test_rename_child() -> None:
    children = set_children({}, [make_child("a", SSK, None, {"u": 1}), make_child("b", None, LIT)], now=1.0)
    renamed = rename_child(children, "a", "c", now=5.0)
    assert set(renamed) == {"b", "c"}
    assert renamed["c"].rw_uri == SSK
    assert renamed["c"].metadata == {"u": 1, "tahoe": {"linkcrtime": 5.0, "linkmotime": 5.0}}
    with pytest.raises(ExistingChildError):
        rename_child(children, "a", "b", now=5.0, overwrite=False)
    with pytest.raises(NoSuchChildError):
        rename_child(children, "zz", "y", now=5.0)
    assert rename_child(children, "a", "a", now=5.0) == children


def test_make_child_error_types() -> None:
    """A mutable cap claiming immutability is a MustBeDeepImmutableError; a broken cap a plain CapError."""
    with pytest.raises(MustBeDeepImmutableError):
        make_child("a", None, "imm." + SSK_RO)
    with pytest.raises(caps.CapError) as info:
        make_child("a", None, "URI:CHK:garbage")
    assert not isinstance(info.value, MustBeDeepImmutableError)
