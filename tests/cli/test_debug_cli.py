"""`tahoe debug dump-cap` end to end in a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys

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
    assert nonsense.returncode == 2 and "usage:" in nonsense.stderr and "Traceback" not in nonsense.stderr
    assert tahoe("--no-such-option").returncode == 2
    assert tahoe("debug").returncode == 2
