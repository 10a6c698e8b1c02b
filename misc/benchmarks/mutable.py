"""Time mutable files (SDMF and MDMF) on a 10-server local grid of lafs and one of the real Tahoe-LAFS 1.20.

Usage (from the repository root, with the project installed)::

    python misc/benchmarks/mutable.py [--runs 3] [--big 64] [--only lafs|tahoe]

The grids are those of ``put_get.py`` (3-of-10, happy 7, every node its own
process on 127.0.0.1), driven through the client's web API:

* create: ``PUT /uri?format=SDMF`` of 100 bytes, latency, median of 10;
* SDMF 1 MiB put (``PUT /uri?format=SDMF``) and get (``GET /uri/$CAP``);
* MDMF ``--big`` MiB (default 64) put and get;
* a 4 KiB ``PUT /uri/$CAP?offset=`` at the middle of the big MDMF file and
  at the middle of a 1 MiB MDMF file (latency, median of 10 each).

Put and get are the median of ``--runs`` in MB/s.  The client's peak RSS
(VmHWM) is reset (``/proc/PID/clear_refs``) before the big MDMF put and read
right after it, and again around the big get.  The servers' shares are deleted
after each big run, untimed (see ``put_get.py`` on why).  Prints ours/Tahoe
ratios.  This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from put_get import CHUNK, Grid, get, peak_rss_mib, put, start_lafs_grid, start_tahoe_grid

UPDATE = 4096
LATENCY_RUNS = 10


def request(web_url: str, method: str, target: str, body: bytes = b"") -> tuple[str, float]:
    """One request with a small body; returns the answer's text and the seconds it took."""
    parts = urlsplit(web_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    started = time.perf_counter()
    conn.request(method, target, body=body)
    response = conn.getresponse()
    text = response.read().decode()
    elapsed = time.perf_counter() - started
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{method} {target} failed: {response.status} {text}")
    return text.strip(), elapsed


def reset_peak_rss(pid: int) -> None:
    """Set VmHWM back to the current RSS, so the next reading is the peak of what follows."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def random_file(path: Path, mib: int) -> Path:
    with path.open("wb") as f:
        for _ in range(mib):
            f.write(os.urandom(CHUNK))
    return path


def update_latency(grid: Grid, cap: str, size: int) -> float:
    """Median seconds of a 4 KiB in-place write at the middle of the file."""
    target = f"/uri/{quote(cap, safe='')}?offset={size // 2}"
    return statistics.median(request(grid.web_url, "PUT", target, os.urandom(UPDATE))[1] for _ in range(LATENCY_RUNS))


def run(grid: Grid, work: Path, runs: int, big: int) -> dict[str, float]:
    r: dict[str, float] = {}
    r["create"] = statistics.median(
        request(grid.web_url, "PUT", "/uri?format=SDMF", os.urandom(100))[1] for _ in range(LATENCY_RUNS)
    )

    small = random_file(work / "small", 1)
    puts, gets = [], []
    for _ in range(runs):
        cap, elapsed = put(grid.web_url, small, "/uri?format=SDMF")
        puts.append(elapsed)
        gets.append(get(grid.web_url, cap, CHUNK))
    r["sdmf_put"], r["sdmf_get"] = CHUNK / 1e6 / statistics.median(puts), CHUNK / 1e6 / statistics.median(gets)

    mdmf_small, _ = put(grid.web_url, small, "/uri?format=MDMF")
    r["update_1"] = update_latency(grid, mdmf_small, CHUNK)

    large = random_file(work / "large", big)
    puts, gets, put_rss, get_rss = [], [], [], []
    for i in range(runs):
        reset_peak_rss(grid.client_pid)
        cap, elapsed = put(grid.web_url, large, "/uri?format=MDMF")
        put_rss.append(peak_rss_mib(grid.client_pid))
        puts.append(elapsed)
        reset_peak_rss(grid.client_pid)
        gets.append(get(grid.web_url, cap, big * CHUNK))
        get_rss.append(peak_rss_mib(grid.client_pid))
        if i == runs - 1:
            r["update_big"] = update_latency(grid, cap, big * CHUNK)
        grid.delete_shares()
    mb = big * CHUNK / 1e6
    r["mdmf_put"], r["mdmf_get"] = mb / statistics.median(puts), mb / statistics.median(gets)
    r["put_rss"], r["get_rss"] = max(put_rss), max(get_rss)
    return r


def show(name: str, r: dict[str, float], big: int) -> None:
    print(
        f"{name:5}  create {r['create'] * 1000:7.1f} ms   SDMF 1 MiB put {r['sdmf_put']:6.1f} get {r['sdmf_get']:6.1f} MB/s   "
        f"MDMF {big} MiB put {r['mdmf_put']:6.1f} get {r['mdmf_get']:6.1f} MB/s\n"
        f"       4 KiB update: {big} MiB file {r['update_big'] * 1000:7.1f} ms, 1 MiB file {r['update_1'] * 1000:7.1f} ms "
        f"(x{r['update_big'] / r['update_1']:.2f})   client peak RSS: put {r['put_rss']:6.1f} MiB, get {r['get_rss']:6.1f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big", type=int, default=64, help="size of the big MDMF file in MiB (default 64)")
    parser.add_argument("--only", choices=["lafs", "tahoe"], default=None)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lafs-bench-mutable-"))
    results: dict[str, dict[str, float]] = {}
    try:
        for name, start in {"lafs": start_lafs_grid, "tahoe": start_tahoe_grid}.items():
            if options.only and name != options.only:
                continue
            grid = start(work / name)
            try:
                results[name] = run(grid, work, options.runs, options.big)
            finally:
                grid.stop()
            show(name, results[name], options.big)
        if not options.only:
            ours, theirs = results["lafs"], results["tahoe"]
            print("\nratios lafs/tahoe (latency and RSS: lower is better; throughput: higher is better)")
            print(
                f"create x{ours['create'] / theirs['create']:.2f}   SDMF 1 MiB put x{ours['sdmf_put'] / theirs['sdmf_put']:.2f} "
                f"get x{ours['sdmf_get'] / theirs['sdmf_get']:.2f}   MDMF {options.big} MiB put "
                f"x{ours['mdmf_put'] / theirs['mdmf_put']:.2f} get x{ours['mdmf_get'] / theirs['mdmf_get']:.2f}\n"
                f"4 KiB update: {options.big} MiB file x{ours['update_big'] / theirs['update_big']:.2f}, "
                f"1 MiB file x{ours['update_1'] / theirs['update_1']:.2f}   "
                f"client peak RSS: put x{ours['put_rss'] / theirs['put_rss']:.2f}, get x{ours['get_rss'] / theirs['get_rss']:.2f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
