"""Time ``tahoe deep-check --add-lease`` and ``--repair`` on a 10-server grid of lafs and one of the real Tahoe-LAFS 1.20.

Usage (from the repository root, with the project installed)::

    python misc/benchmarks/deep_check.py [--files 500] [--only lafs|tahoe]

The grids are those of ``put_get.py`` (3-of-10, happy 7, every node its own
process on 127.0.0.1).  On each, untimed, through the gateway's web API: a
tree of 20 directories below the root (4 of them, each with 4 subdirectories)
and ``--files`` small CHK files (1-4 KiB of random bytes, above the 55-byte
literal limit) spread evenly over them, each file ``PUT /uri`` and every
directory made by ``POST /uri?t=mkdir-with-children``.  A node directory
holding ``node.url`` and ``private/aliases`` (``bench:`` -> the root) points
each side's own CLI (``python -m lafs``, the real ``tahoe``) at its own grid.

Timed (wall time of the whole CLI process, start-up included):

1. ``tahoe deep-check --add-lease bench:`` on the healthy tree;
2. then 3 of the 10 storage servers' share files are deleted (nothing is
   stopped), and ``tahoe deep-check --repair bench:`` repairs every object.

Prints the seconds, the CLI's summary lines and the lafs/Tahoe ratios
(Tahoe's time over ours: how many times faster we are).  This is a benchmark,
not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutable import request
from put_get import Grid, start_lafs_grid, start_tahoe_grid
from tests.interop import harness

DIRECTORIES = 20
EMPTIED = 3
ALIAS = "bench"


def tree_layout() -> list[tuple[str, ...]]:
    """The 20 directories' paths: d0..d3, each with four subdirectories."""
    top = [(f"d{i}",) for i in range(4)]
    return top + [(*parent, f"s{j}") for parent in top for j in range(4)]


def build_tree(grid: Grid, files: int, workers: int = 4) -> str:
    """Upload ``files`` small files and link them into 20 directories below a root; returns the root's write cap."""
    rng = random.Random(files)
    layout = tree_layout()
    sizes = [rng.randint(1024, 4096) for _ in range(files)]
    with ThreadPoolExecutor(workers) as pool:
        caps = list(pool.map(lambda size: request(grid.web_url, "PUT", "/uri", os.urandom(size))[0], sizes))
    contents: dict[tuple[str, ...], dict[str, list[object]]] = {path: {} for path in [(), *layout]}
    for i, cap in enumerate(caps):
        contents[layout[i % len(layout)]][f"file{i:04}"] = ["filenode", {"ro_uri": cap}]
    # Deepest first, so every directory's children already exist.
    for path in sorted(contents, key=len, reverse=True):
        body = json.dumps(contents[path]).encode()
        cap = request(grid.web_url, "POST", "/uri?t=mkdir-with-children", body)[0]
        if path:
            contents[path[:-1]][path[-1]] = ["dirnode", {"rw_uri": cap}]
        else:
            return cap
    raise AssertionError("unreachable")


def node_directory(grid: Grid, root: str) -> Path:
    """A node directory that only points a CLI at the grid's gateway (node.url) and names the root (bench:)."""
    nodedir = grid.base / "cli"
    (nodedir / "private").mkdir(parents=True, exist_ok=True)
    (nodedir / "node.url").write_text(grid.web_url + "\n")
    (nodedir / "private" / "aliases").write_text(f"{ALIAS}: {root}\n")
    return nodedir


def cli(name: str, nodedir: Path, *args: str) -> tuple[float, str]:
    """Run that side's ``tahoe -d NODEDIR ARGS``; returns the wall seconds and its output."""
    program = [sys.executable, "-m", "lafs"] if name == "lafs" else [str(harness.tahoe_executable())]
    started = time.perf_counter()
    result = subprocess.run([*program, "-d", str(nodedir), *args], capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed, result.stdout


def empty_servers(grid: Grid, count: int) -> None:
    """Delete every share file of the first ``count`` storage servers (as ``Grid.delete_shares`` does for all)."""
    for i in range(count):
        for prefix in (grid.base / f"storage{i}" / "storage" / "shares").glob("*"):
            if prefix.name != "incoming":
                shutil.rmtree(prefix)


def summary(out: str) -> str:
    """The CLI's closing summary (from its ``done:`` line on), without Tahoe's per-object progress lines."""
    lines = out.strip().splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("done:")), 0)
    return " /".join(line.rstrip() for line in lines[first:])


def run(grid: Grid, files: int) -> dict[str, float]:
    started = time.perf_counter()
    root = build_tree(grid, files)
    print(f"{grid.name:5}  built {DIRECTORIES} directories and {files} files in {time.perf_counter() - started:.1f} s (untimed)",
          flush=True)
    nodedir = node_directory(grid, root)
    r: dict[str, float] = {}
    r["lease"], out = cli(grid.name, nodedir, "deep-check", "--add-lease", f"{ALIAS}:")
    print(f"{grid.name:5}  deep-check --add-lease  {r['lease']:7.2f} s   " + summary(out), flush=True)
    empty_servers(grid, EMPTIED)
    r["repair"], out = cli(grid.name, nodedir, "deep-check", "--repair", f"{ALIAS}:")
    print(f"{grid.name:5}  deep-check --repair     {r['repair']:7.2f} s   " + summary(out), flush=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--only", choices=["lafs", "tahoe"], default=None)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lafs-bench-deep-"))
    results: dict[str, dict[str, float]] = {}
    try:
        for name, start in {"lafs": start_lafs_grid, "tahoe": start_tahoe_grid}.items():
            if options.only and name != options.only:
                continue
            grid = start(work / name)
            try:
                results[name] = run(grid, options.files)
            finally:
                grid.stop()
        if not options.only:
            ours, theirs = results["lafs"], results["tahoe"]
            print("\nlafs is N times faster than Tahoe (Tahoe's seconds / ours; target >= 5)")
            print(f"deep-check --add-lease x{theirs['lease'] / ours['lease']:.2f}   "
                  f"deep-check --repair x{theirs['repair'] / ours['repair']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
