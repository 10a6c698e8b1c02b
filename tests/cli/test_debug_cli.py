"""`tahoe debug dump-cap` and `dump-share` end to end in a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from lafs.core import caps

CHK = "URI:CHK:aeaqcaibaeaqcaibaeaqcaibae:nf3nimquen7aeqm36ekgxomalstenpkvsdmf6fplj7swdatbv5oa:3:10:1234"
DIR2 = "URI:DIR2:mnsqs7br4xbc6ghtpfl5ewzjzm:jlens2myp4td3bcjogvs5gl5cbvnxl3fycfwqyi5qqxp6ddk7etq"


def tahoe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lafs", *args], capture_output=True, text=True, timeout=60)


def test_dump_cap_chk() -> None:
    result = tahoe("debug", "dump-cap", CHK)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "CHK File:"
    assert " k/N: 3/10" in lines
    assert "storage index: xdjlalot2gbbkllavjv26e4xwm" in lines
    assert (
        "verify cap: URI:CHK-Verifier:xdjlalot2gbbkllavjv26e4xwm:"
        "nf3nimquen7aeqm36ekgxomalstenpkvsdmf6fplj7swdatbv5oa:3:10:1234"
    ) in lines
    assert not any(line.startswith("read-only cap:") for line in lines)


def test_dump_cap_directory_write_cap() -> None:
    result = tahoe("debug", "dump-cap", DIR2)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Directory Writeable URI:"
    assert "storage index: qelphciwqiossshck234aemx2e" in lines
    assert (
        "read-only cap: URI:DIR2-RO:tlw2mw6r6ocrncmxpbszsmn44q:jlens2myp4td3bcjogvs5gl5cbvnxl3fycfwqyi5qqxp6ddk7etq"
    ) in lines
    assert any(line.startswith("verify cap: URI:DIR2-Verifier:qelphciwqiossshck234aemx2e:") for line in lines)


def test_dump_cap_malformed_is_one_line_exit_1() -> None:
    result = tahoe("debug", "dump-cap", "URI:CHK:not-a-cap")
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "CHK cap" in result.stderr
    assert "Traceback" not in result.stderr


def test_version_and_usage_errors() -> None:
    version = tahoe("--version")
    assert version.returncode == 0 and "tahoe-lafs: 1.20.0" in version.stdout
    assert re.search(r"^zfec: .* \(parity blocks computed by (ISA-L|zfec)\)$", version.stdout, re.MULTILINE)
    assert tahoe("--help").returncode == 0
    nonsense = tahoe("nonsense")
    assert nonsense.returncode == 1 and "usage:" in nonsense.stderr and "Traceback" not in nonsense.stderr
    assert tahoe("--no-such-option").returncode == 1
    assert tahoe("debug").returncode == 1


# --- dump-share ----------------------------------------------------------------------------

DATA = Path(__file__).resolve().parents[1] / "unit" / "data"
SHARES = json.loads((DATA / "dump_share_fixtures.json").read_text())


def test_dump_share_immutable_prints_the_verify_cap() -> None:
    path = DATA / SHARES["chk"]["path"]
    result = tahoe("debug", "dump-share", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"share filename: {str(path)!r}"
    assert "           file_size: 1320" in lines
    assert f"          verify-cap: {caps.from_string_strict(SHARES['chk']['cap']).get_verify_cap().to_string()}" in lines
    assert re.search(r"^ Lease #0: owner=0, expire in -?\d+s", result.stdout, re.MULTILINE)


def test_dump_share_mutable_with_offsets_and_a_relative_path() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lafs", "debug", "dump-share", "--offsets", SHARES["mdmf"]["path"]],
        cwd=DATA,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"share filename: {str(DATA / SHARES['mdmf']['path'])!r}"
    assert " share_type: MDMF" in lines
    assert " Section Offsets:" in lines
    assert "    block data: 2635   (0xa4b)" in lines
    verify_cap = caps.from_string_strict(SHARES["mdmf"]["cap"]).get_verify_cap().to_string()
    assert f"  verify-cap: {verify_cap}" in lines


def test_dump_share_leases_only() -> None:
    result = tahoe("debug", "dump-share", "--leases-only", str(DATA / SHARES["chk"]["path"]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[1] == lines[3] == "" and lines[2].startswith(" Lease #0: owner=0, expire in ")


def _one_line_error(result: subprocess.CompletedProcess[str], needle: str) -> None:
    assert result.returncode == 1
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_dump_share_bad_input_is_one_line_exit_1(tmp_path: Path) -> None:
    _one_line_error(tahoe("debug", "dump-share", str(tmp_path / "missing")), "No such file or directory")
    _one_line_error(tahoe("debug", "dump-share", str(tmp_path)), "is a directory")
    (tmp_path / "empty").write_bytes(b"")
    _one_line_error(tahoe("debug", "dump-share", str(tmp_path / "empty")), "truncated")
    (tmp_path / "junk").write_bytes(b"not a share at all, just some text\n" * 10)
    _one_line_error(tahoe("debug", "dump-share", str(tmp_path / "junk")), "not a share file")
    sdmf = (DATA / SHARES["sdmf"]["path"]).read_bytes()
    (tmp_path / "short").write_bytes(sdmf[:1000])
    _one_line_error(tahoe("debug", "dump-share", str(tmp_path / "short")), "truncated")
