"""``dump_share_lines`` against what the real Tahoe 1.20 printed for the same share files.

The fixtures are real shares (tests/unit/data/shares/<SI>/0, made by
dump_share_producer.py.txt) and variants of them built by ``make_variants``
below (expired and extra leases, a version-1 container, extra UEB keys, a
version-2 share layout...), whose real output dump_share_variants_producer.py.txt
recorded.  Lease lines depend on the clock, so their seconds are compared
separately, within a small tolerance.
"""

from __future__ import annotations

import ast
import json
import re
import struct
from pathlib import Path

import pytest

from lafs.cli import dump_share
from lafs.cli.dump_share import DumpShareError, dump_share_lines, storage_index_from_path
from lafs.core.containers import MUTABLE_MAGIC_V1
from lafs.core.share_layout import pack_ueb, unpack_ueb

DATA = Path(__file__).parent / "data"
FIXTURES = json.loads((DATA / "dump_share_fixtures.json").read_text())
VARIANTS = json.loads((DATA / "dump_share_variants.json").read_text())
_EXPIRY = re.compile(r"(expires? in )(-?\d+)s( \(\d+ days\))?")
_SUFFIX_OPTIONS = {"": {}, "_offsets": {"offsets": True}, "_leases": {"leases_only": True}}
_VARIANT_SI = "aaaaaaaaaaaaaaaaaaaaaaaaaa"


def share_bytes(kind: str) -> bytes:
    return (DATA / FIXTURES[kind]["path"]).read_bytes()


def _recorded_path(text: str) -> str:
    first = text.splitlines()[0]
    assert first.startswith("share filename: ")
    return str(ast.literal_eval(first[len("share filename: ") :]))


def assert_same_output(ours: list[str], real_text: str, tolerance: float = 10) -> None:
    """Equal line for line, except lease seconds: the fixture keeps one time per share, taken before
    the real tool ran (up to three times, a few seconds each), so ours may be a little larger."""
    real = real_text.split("\n")
    assert real[-1] == ""
    real = real[:-1]
    ours_seconds = [int(m.group(2)) for line in ours for m in [_EXPIRY.search(line)] if m]
    real_seconds = [int(m.group(2)) for line in real for m in [_EXPIRY.search(line)] if m]
    assert len(ours_seconds) == len(real_seconds)
    for mine, theirs in zip(ours_seconds, real_seconds, strict=True):
        assert 0 <= mine - theirs <= tolerance

    def normal(lines: list[str]) -> list[str]:
        return [_EXPIRY.sub(lambda m: m.group(1) + "N" + ("s (D days)" if m.group(3) else "s"), line) for line in lines]

    assert normal(ours) == normal(real)


@pytest.mark.parametrize("kind", ["chk", "sdmf", "mdmf"])
@pytest.mark.parametrize("suffix", list(_SUFFIX_OPTIONS))
def test_real_shares_match_real_output(kind: str, suffix: str) -> None:
    real = (DATA / f"dump_share_{kind}{suffix}.txt").read_text()
    ours = dump_share_lines(
        share_bytes(kind), _recorded_path(real), FIXTURES[kind]["dumped_at"], **_SUFFIX_OPTIONS[suffix]
    )
    assert_same_output(ours, real)


def test_verify_caps_agree_with_the_uploaded_caps() -> None:
    from lafs.core import caps

    for kind in ("chk", "sdmf", "mdmf"):
        path = str(DATA / FIXTURES[kind]["path"])
        lines = dump_share_lines(share_bytes(kind), path, FIXTURES[kind]["dumped_at"])
        verify_line = next(line for line in lines if "verify-cap:" in line)
        expected = caps.from_string_strict(FIXTURES[kind]["cap"]).get_verify_cap()
        assert expected is not None
        assert verify_line.split("verify-cap: ")[1] == expected.to_string()


# --- variants built from the real shares ------------------------------------------------


def _put_lease_mutable(share: bytearray, slot: int, record: bytes) -> None:
    share[100 + 92 * slot : 100 + 92 * (slot + 1)] = record


def make_variants() -> dict[str, tuple[bytes, list[str]]]:
    """Share files derived from the real fixtures, with the dump-share options to run on each."""
    chk, sdmf, mdmf = share_bytes("chk"), share_bytes("sdmf"), share_bytes("mdmf")
    lease = chk[-72:]
    _, renew, cancel, _ = struct.unpack(">L32s32sL", lease)
    variants: dict[str, tuple[bytes, list[str]]] = {}
    # Two leases, the first long expired and with another owner number.
    two = chk[:8] + struct.pack(">L", 2) + chk[12:-72] + struct.pack(">L32s32sL", 5, renew, cancel, 1000) + lease
    variants["chk_two_leases"] = (two, [])
    variants["chk_no_leases"] = (chk[:8] + struct.pack(">L", 0) + chk[12:-72], [])
    variants["chk_no_leases_only"] = (chk[:8] + struct.pack(">L", 0) + chk[12:-72], ["--leases-only"])
    variants["chk_container_v1"] = (struct.pack(">L", 1) + chk[4:], [])
    # UEB with keys older uploaders wrote and keys nobody knows.
    header = struct.unpack(">9L", chk[12:48])
    ueb_at = 12 + header[8]
    (ueb_length,) = struct.unpack(">L", chk[ueb_at : ueb_at + 4])
    fields = unpack_ueb(chk[ueb_at + 4 : ueb_at + 4 + ueb_length])
    fields.update({"plaintext_hash": b"P" * 32, "plaintext_root_hash": b"Q" * 32, "zzz_unknown": b"hello", "aaa": b"7"})
    ueb = pack_ueb(fields)
    extra = chk[:ueb_at] + struct.pack(">L", len(ueb)) + ueb + lease
    variants["chk_extra_ueb_keys"] = (extra, ["--offsets"])
    # The same share with a version-2 (64-bit) share layout.
    body = chk[48:-72]
    ueb_rel = header[8] - 36
    v2 = (
        struct.pack(">LQQQQQQQQ", 2, header[1], header[2], *[x + 0x20 for x in header[3:]])
        + body[:ueb_rel]
        + struct.pack(">Q", ueb_length)
        + body[ueb_rel + 4 :]
    )
    variants["chk_layout_v2"] = (struct.pack(">LLL", 2, len(v2), 1) + v2 + lease, ["--offsets"])
    # A version-1 mutable container (secrets in clear) with a lease in slot 2 that has expired.
    v1 = bytearray(sdmf)
    v1[:32] = MUTABLE_MAGIC_V1
    _put_lease_mutable(v1, 2, struct.pack(">LL32s32s20s", 7, 1000, b"R" * 32, b"C" * 32, b"N" * 20))
    variants["sdmf_container_v1_slot2"] = (bytes(v1), [])
    # An owner number of 0 marks an empty slot even when the secrets are not zero.
    owner0 = bytearray(sdmf)
    _put_lease_mutable(owner0, 1, struct.pack(">LL32s32s20s", 0, 5, b"R" * 32, b"C" * 32, b"N" * 20))
    variants["sdmf_owner0_slot"] = (bytes(owner0), [])
    (extra_at,) = struct.unpack(">Q", sdmf[92:100])
    with_extra = sdmf[:extra_at] + struct.pack(">L", 1) + struct.pack(">LL32s32s20s", 3, 2000000000, b"r" * 32, b"c" * 32, b"n" * 20)
    variants["sdmf_extra_lease"] = (with_extra, ["--offsets"])
    no_leases = bytearray(mdmf)
    _put_lease_mutable(no_leases, 0, b"\0" * 92)
    variants["mdmf_no_leases"] = (bytes(no_leases), [])
    # The share hash chain stored in reverse order: SDMF and MDMF list it differently.
    for name, share, chain_at_field in (("sdmf", sdmf, (79, 83, ">L")), ("mdmf", mdmf, (67, 75, ">Q"))):
        size = struct.calcsize(chain_at_field[2])
        start = 468 + struct.unpack(chain_at_field[2], share[468 + chain_at_field[0] : 468 + chain_at_field[0] + size])[0]
        end = 468 + struct.unpack(chain_at_field[2], share[468 + chain_at_field[1] : 468 + chain_at_field[1] + size])[0]
        pairs = [share[at : at + 34] for at in range(start, end, 34)]
        variants[f"{name}_chain_reversed"] = (share[:start] + b"".join(reversed(pairs)) + share[end:], [])
    unknown = bytearray(sdmf)
    unknown[468] = 5
    variants["mutable_unknown_version"] = (bytes(unknown), ["--offsets"])
    return variants


def _options(flags: list[str]) -> dict[str, bool]:
    return {"offsets": "--offsets" in flags, "leases_only": "--leases-only" in flags}


def test_variants_are_all_recorded() -> None:
    assert sorted(make_variants()) == sorted(VARIANTS)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variants_match_real_output(name: str) -> None:
    share, flags = make_variants()[name]
    recorded = VARIANTS[name]
    assert recorded["options"] == flags
    ours = dump_share_lines(share, _recorded_path(recorded["stdout"]), recorded["dumped_at"], **_options(flags))
    assert_same_output(ours, recorded["stdout"])


# --- our own behaviour where Tahoe has none (it raises a traceback) ----------------------


def test_share_outside_a_storage_index_directory_has_no_verify_cap() -> None:
    lines = dump_share_lines(share_bytes("chk"), "/tmp/elsewhere/0", FIXTURES["chk"]["dumped_at"])
    assert "          verify-cap: (unknown: the parent directory 'elsewhere' is not a storage index)" in lines
    lines = dump_share_lines(share_bytes("mdmf"), "/tmp/x/0", FIXTURES["mdmf"]["dumped_at"])
    assert "  verify-cap: (unknown: the parent directory 'x' is not a storage index)" in lines


def test_storage_index_from_path() -> None:
    assert storage_index_from_path(f"/s/shares/aa/{_VARIANT_SI}/3") == b"\0" * 16
    assert storage_index_from_path("/s/shares/aa/notbase32!/3") is None
    assert storage_index_from_path("/s/shares/aa/aaaa/3") is None  # base32, but not 16 bytes


def test_lease_expiry_text() -> None:
    chk = share_bytes("chk")
    (expiry,) = struct.unpack(">L", chk[-4:])
    lines = dump_share_lines(chk, f"/x/{_VARIANT_SI}/0", expiry - 2 * 86400 - 0.5, leases_only=True)
    assert lines[2] == " Lease #0: owner=0, expire in 172800s (2 days)"
    lines = dump_share_lines(chk, f"/x/{_VARIANT_SI}/0", expiry + 10.5, leases_only=True)
    assert lines[2] == " Lease #0: owner=0, expire in -10s"


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda chk, sdmf: b"", "the container header needs 12 bytes"),
        (lambda chk, sdmf: b"x" * 200, "not a share file"),
        (lambda chk, sdmf: chk[:30], "too short for 1 leases"),
        (lambda chk, sdmf: chk[:600], "URI extension block lies past the end"),
        (lambda chk, sdmf: chk[:12] + b"\0\0\0\x09" + chk[16:], "unknown immutable share layout version 9"),
        (lambda chk, sdmf: chk[:12] + struct.pack(">LLL", 1, 440, 440) + b"\xff" * 4 + chk[28:], "out of order"),
        (lambda chk, sdmf: sdmf[:150], "mutable container header and lease slots needs 468 bytes"),
        (lambda chk, sdmf: sdmf[:600], "extra-lease count"),
        (lambda chk, sdmf: sdmf[:92] + struct.pack(">Q", 100) + sdmf[100:], "extra-lease offset lies inside the share data"),
        (lambda chk, sdmf: sdmf[: 468 + 75] + b"\xff" * 4 + sdmf[468 + 79 :], "SDMF share offsets are out of order"),
    ],
)
def test_bad_input_is_one_clear_error(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    data = mangle(share_bytes("chk"), share_bytes("sdmf"))
    with pytest.raises(DumpShareError) as caught:
        dump_share_lines(data, f"/x/{_VARIANT_SI}/0", 0.0)
    text = str(caught.value)
    assert text.startswith(f"/x/{_VARIANT_SI}/0: ")
    assert message in text
    assert "\n" not in text


def test_formatting_module_does_no_io() -> None:
    """The formatter is a pure function of bytes, path and time; the CLI does the reading."""
    tree = ast.parse(Path(dump_share.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert not {name.split(".")[0] for name in names} & {"os", "io", "time", "pathlib", "mmap", "sys"}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id not in {"open", "print", "input"}
