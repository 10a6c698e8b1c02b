"""Time directories on a 10-server local grid of lafs and one of the real Tahoe-LAFS 1.20.

Usage (from the repository root, with the project installed)::

    python misc/benchmarks/directories.py [--sizes 10,1000,10000] [--runs 5] [--files 200] [--cp-runs 1] [--only lafs|tahoe]

The grids are those of ``put_get.py`` (3-of-10, happy 7, every node its own
process on 127.0.0.1).  Through the client's web API:

* a mutable directory of each size is made, untimed, with
  ``POST /uri?t=mkdir-with-children`` (every child a distinct LIT file cap);
* add: ``PUT /uri/$DIRCAP/new-N?t=uri`` linking a small CHK file's cap
  (uploaded once, untimed), latency, median of ``--runs``;
* list: ``GET /uri/$DIRCAP?t=json``, latency, median of ``--runs``.

Then ``tahoe cp -r`` of a local tree of ``--files`` small files (1-4 KiB, a
quarter of them at the top, the rest in four subdirectories, one of them
nested) into a new directory of the grid: wall time of the whole command, ours
``python -m lafs cp -r`` and the real ``$LAFS_TAHOE_VENV/bin/tahoe cp -r``,
each with ``-d`` the grid's client node directory (its ``node.url``, and a
``tahoe:`` alias written into ``private/aliases``).  Prints ours/Tahoe
ratios (Tahoe's time over ours: higher is better).  This is a benchmark, not a
test.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutable import request
from put_get import Grid, start_lafs_grid, start_tahoe_grid
from tests.interop import harness


def lit_cap(data: bytes) -> str:
    return "URI:LIT:" + base64.b32encode(data).decode("ascii").lower().rstrip("=")


def make_directory(grid: Grid, size: int) -> str:
    """A new mutable directory of ``size`` LIT children (untimed); its write cap."""
    children = {f"file-{i:05d}": ["filenode", {"ro_uri": lit_cap(f"contents of {i}".encode()), "metadata": {}}] for i in range(size)}
    cap, _ = request(grid.web_url, "POST", "/uri?t=mkdir-with-children", json.dumps(children).encode())
    return cap


def make_tree(root: Path, files: int) -> Path:
    """``files`` small random files: a quarter at the top, the rest in a/, b/, c/ and c/d/."""
    rng = random.Random(1)
    dirs = [root, root / "a", root / "b", root / "c", root / "c" / "d"]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        where = dirs[0] if i < files // 4 else dirs[1 + i % 4]
        (where / f"f{i:04d}.txt").write_bytes(rng.randbytes(rng.randint(1024, 4096)))
    return root


def cp_command(kind: str) -> list[str]:
    if kind == "lafs":
        return [sys.executable, "-m", "lafs"]
    return [str(harness.tahoe_executable())]


def time_cp(kind: str, grid: Grid, tree: Path, target: str) -> float:
    node_dir = grid.base / "client"
    started = time.perf_counter()
    subprocess.run([*cp_command(kind), "-d", str(node_dir), "cp", "-r", str(tree), f"tahoe:{target}"],
                   check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - started


def check_copy(grid: Grid, alias_cap: str, target: str, files: int) -> None:
    """The copy is all there: count the files below ``target``."""
    def count(path: str) -> int:
        text, _ = request(grid.web_url, "GET", path + "?t=json")
        total = 0
        for name, (kind, _) in json.loads(text)[1]["children"].items():
            total += count(path + "/" + quote(name)) if kind == "dirnode" else 1
        return total

    found = count(f"/uri/{quote(alias_cap, safe='')}/{target}")
    if found != files:
        raise RuntimeError(f"cp -r copied {found} of {files} files")


def run(kind: str, grid: Grid, work: Path, sizes: list[int], runs: int, files: int, cp_runs: int) -> dict[str, float]:
    r: dict[str, float] = {}
    child, _ = request(grid.web_url, "PUT", "/uri", os.urandom(1000))
    for size in sizes:
        dircap = quote(make_directory(grid, size), safe="")
        adds = [request(grid.web_url, "PUT", f"/uri/{dircap}/new-{i}?t=uri", child.encode())[1] for i in range(runs)]
        lists = [request(grid.web_url, "GET", f"/uri/{dircap}?t=json")[1] for _ in range(runs)]
        r[f"add_{size}"], r[f"list_{size}"] = statistics.median(adds), statistics.median(lists)
        print(f"{kind:5} {size:6} entries  add {r[f'add_{size}'] * 1000:8.1f} ms  list {r[f'list_{size}'] * 1000:8.1f} ms", flush=True)
    alias_cap, _ = request(grid.web_url, "POST", "/uri?t=mkdir")
    aliases = grid.base / "client" / "private" / "aliases"
    aliases.write_text(f"tahoe: {alias_cap}\n")
    tree = work / "tree"
    if not tree.exists():
        make_tree(tree, files)
    times = []
    for i in range(cp_runs):
        times.append(time_cp(kind, grid, tree, f"copy-{i}"))
        check_copy(grid, alias_cap, f"copy-{i}", files)
    r["cp"] = statistics.median(times)
    print(f"{kind:5} cp -r of {files} files  {r['cp']:8.2f} s", flush=True)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,1000,10000", help="directory sizes (default 10,1000,10000)")
    parser.add_argument("--runs", type=int, default=5, help="adds and listings per size (default 5)")
    parser.add_argument("--files", type=int, default=200, help="files in the cp -r tree (default 200)")
    parser.add_argument("--cp-runs", type=int, default=1, help="cp -r runs (default 1)")
    parser.add_argument("--only", choices=["lafs", "tahoe"], default=None)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lafs-bench-dirs-"))
    results: dict[str, dict[str, float]] = {}
    try:
        for kind, start in {"lafs": start_lafs_grid, "tahoe": start_tahoe_grid}.items():
            if options.only and kind != options.only:
                continue
            grid = start(work / kind)
            try:
                results[kind] = run(kind, grid, work, sizes, options.runs, options.files, options.cp_runs)
            finally:
                grid.stop()
        if not options.only:
            ours, theirs = results["lafs"], results["tahoe"]
            print("\nspeed-ups lafs over tahoe (Tahoe's time / ours: higher is better; target x3 at 1,000+ entries and for cp -r)")
            for size in sizes:
                print(f"{size:6} entries  add x{theirs[f'add_{size}'] / ours[f'add_{size}']:.2f}  "
                      f"list x{theirs[f'list_{size}'] / ours[f'list_{size}']:.2f}")
            print(f"cp -r of {options.files} files  x{theirs['cp'] / ours['cp']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
