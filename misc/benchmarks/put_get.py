"""Time ``put`` and ``get`` on a 10-server local grid of lafs and one of the real Tahoe-LAFS 1.20.

Usage (from the repository root, with the project installed)::

    python misc/benchmarks/put_get.py [--sizes 1,16,128] [--runs 3] [--only lafs|tahoe] [--protocols http,foolscap]

Both grids are 3-of-10 with happy 7, every node its own process on 127.0.0.1.
Each size is a random file; put is ``PUT /uri`` and get is ``GET /uri/$CAP``
against the client's web API (the CLI's start-up cost is left out); the
servers' shares are deleted after each run, untimed.  The
median of ``--runs`` runs is reported in MB/s, with the client process's peak
RSS (VmHWM), and the lafs/Tahoe ratios.  This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import functools
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.cli.nodes import stop_pids  # noqa: E402
from tests.interop import harness  # noqa: E402

NEEDED, HAPPY, TOTAL, SERVERS = 3, 7, 10, 10
CHUNK = 1024 * 1024


def lafs(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lafs", *args], check=True, capture_output=True, timeout=120)


def listen(port: int) -> list[str]:
    return ["--listen=tcp", f"--port=tcp:{port}:interface=127.0.0.1", f"--location=tcp:127.0.0.1:{port}"]


class Grid:
    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        self.pids: list[int] = []
        self.client_pid = 0
        self.web_url = ""

    def stop(self) -> None:
        stop_pids(self.pids)

    def delete_shares(self) -> None:
        """Empty every storage server (both grids keep shares under ``storage{i}/storage/shares/``)."""
        for prefix in self.base.glob("storage*/storage/shares/*"):
            if prefix.name != "incoming":
                shutil.rmtree(prefix)


def start_lafs_grid(base: Path, protocol: str = "http") -> Grid:
    """Our grid; ``protocol`` is how the client talks to the storage servers (HTTP is the 1.20 default)."""
    grid = Grid("lafs" if protocol == "http" else f"lafs-{protocol}", base)
    introducer = base / "introducer"
    lafs("create-introducer", *listen(harness.free_port()), str(introducer))
    lafs("start", str(introducer))
    grid.pids.append(int((introducer / "running.process").read_text()))
    furl = (introducer / "private" / "introducer.furl").read_text().strip()
    for i in range(SERVERS):
        node = base / f"storage{i}"
        lafs("create-node", *listen(harness.free_port()), "--webport=none", f"--introducer={furl}", f"--nickname=s{i}", str(node))
        lafs("start", str(node))
        grid.pids.append(int((node / "running.process").read_text()))
    client = base / "client"
    port = harness.free_port()
    lafs("create-client", f"--introducer={furl}", f"--webport=tcp:{port}:interface=127.0.0.1",
         f"--shares-needed={NEEDED}", f"--shares-happy={HAPPY}", f"--shares-total={TOTAL}", str(client))
    if protocol == "foolscap":
        config = client / "tahoe.cfg"
        config.write_text(config.read_text().replace("[client]\n", "[client]\nforce_foolscap = true\n", 1))
    lafs("start", str(client))
    grid.client_pid = int((client / "running.process").read_text())
    grid.pids.append(grid.client_pid)
    grid.web_url = f"http://127.0.0.1:{port}/"
    harness.wait_for_servers(grid.web_url, SERVERS, 120)
    return grid


def start_tahoe_grid(base: Path) -> Grid:
    grid = Grid("tahoe", base)
    base.mkdir(parents=True, exist_ok=True)
    real = harness.start_real_grid(base, num_storage=SERVERS, needed=NEEDED, happy=HAPPY, total=TOTAL)
    grid.pids = [node.pid for node in real.nodes()]
    grid.client_pid = real.client.pid
    grid.web_url = real.web_url
    grid._real = real  # type: ignore[attr-defined]
    return grid


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def put(web_url: str, path: Path, target: str = "/uri") -> tuple[str, float]:
    """``PUT target`` with the file as the body (streamed); returns the answer's text and the seconds taken."""
    parts = urlsplit(web_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    size = path.stat().st_size
    started = time.perf_counter()
    conn.putrequest("PUT", target)
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            conn.send(chunk)
    response = conn.getresponse()
    body = response.read().decode()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise RuntimeError(f"PUT failed: {response.status} {body}")
    return body.strip(), elapsed


def get(web_url: str, cap: str, size: int) -> float:
    parts = urlsplit(web_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
    started = time.perf_counter()
    conn.request("GET", "/uri/" + quote(cap, safe=""))
    response = conn.getresponse()
    received = 0
    while chunk := response.read(CHUNK):
        received += len(chunk)
    elapsed = time.perf_counter() - started
    if response.status != 200 or received != size:
        raise RuntimeError(f"GET failed: {response.status}, {received} of {size} bytes")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,16,128", help="file sizes in MiB (default 1,16,128)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["lafs", "tahoe"], default=None)
    parser.add_argument(
        "--protocols", default="http",
        help="how our client reaches the storage servers: http (the 1.20 default), foolscap, or both (http,foolscap); "
        "the real Tahoe uses its default (HTTP)",
    )
    options = parser.parse_args()
    protocols = [p.strip() for p in options.protocols.split(",") if p.strip()]
    if not protocols or set(protocols) - {"http", "foolscap"}:
        parser.error("--protocols takes http, foolscap or http,foolscap")
    sizes = [int(s) for s in options.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lafs-bench-"))
    results: dict[tuple[str, int], dict[str, float]] = {}
    try:
        for size in sizes:
            data = work / f"file-{size}"
            with data.open("wb") as f:
                for _ in range(size):
                    f.write(os.urandom(CHUNK))
        starters: list[tuple[str, str, Callable[[Path], Grid]]] = [
            ("lafs", "lafs" if p == "http" else f"lafs-{p}", functools.partial(start_lafs_grid, protocol=p)) for p in protocols
        ]
        starters.append(("tahoe", "tahoe", start_tahoe_grid))
        for kind, name, start in starters:
            if options.only and kind != options.only:
                continue
            grid = start(work / name)
            try:
                # One untimed put of the largest file first: whichever grid ran first paid for the
                # fresh machine's first touch of the memory the shares pass through (page cache,
                # socket buffers), which made the same code 7% slower as the first grid than the second.
                put(grid.web_url, work / f"file-{max(sizes)}")
                grid.delete_shares()
                for size in sizes:
                    data = work / f"file-{size}"
                    put_times, get_times = [], []
                    for _ in range(options.runs):
                        # Fresh random bytes each run, so convergent dedup cannot help.
                        with data.open("r+b") as f:
                            f.write(os.urandom(32))
                        cap, elapsed = put(grid.web_url, data)
                        put_times.append(elapsed)
                        get_times.append(get(grid.web_url, cap, size * CHUNK))
                        # Each run starts from empty servers: otherwise the page cache grows
                        # into memory a fresh VM has never touched, and first touch costs
                        # ~14x a reused page (2.5 vs 0.18 ms/MiB here), on whichever run.
                        grid.delete_shares()
                    mb = size * CHUNK / 1e6
                    results[(name, size)] = {
                        "put": mb / statistics.median(put_times),
                        "get": mb / statistics.median(get_times),
                        "rss": peak_rss_mib(grid.client_pid),
                    }
                    r = results[(name, size)]
                    print(f"{name:13} {size:4} MiB  put {r['put']:7.1f} MB/s  get {r['get']:7.1f} MB/s  "
                          f"client peak RSS {r['rss']:7.1f} MiB", flush=True)
            finally:
                grid.stop()
        names = [name for kind, name, _ in starters if kind == "lafs"]
        pairs = [(name, "tahoe") for name in names] if not options.only else []
        if "lafs" in names and "lafs-foolscap" in names:
            pairs.append(("lafs", "lafs-foolscap"))
        for ours_name, theirs_name in pairs:
            print(f"\nratios {ours_name}/{theirs_name} (throughput: higher is better; RSS: lower is better)")
            for size in sizes:
                ours, theirs = results[(ours_name, size)], results[(theirs_name, size)]
                print(f"{size:4} MiB  put x{ours['put'] / theirs['put']:.2f}  get x{ours['get'] / theirs['get']:.2f}  "
                      f"RSS x{ours['rss'] / theirs['rss']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
