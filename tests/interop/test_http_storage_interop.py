"""The HTTP storage protocol across implementations: a real 1.20 client on our servers, ours on real servers.

A real 1.20 client reports ``connection_status`` "connected" for a server it
reaches over HTTP and "Connected to tcp:… via tcp" for a Foolscap one, so the
exact string tells which protocol each side chose.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.cli.nodes import listen_args, start_node, tahoe, wait_for, welcome
from tests.interop import harness

HTTP_STATUS = "connected"


def statuses(web_url: str) -> list[str]:
    try:
        return [server["connection_status"] for server in welcome(web_url)["servers"]]
    except OSError:
        return []


def test_a_real_client_stores_and_reads_on_our_servers_over_http(
    tahoe_oracle: Path, tmp_path: Path, started_pids: list[int]
) -> None:
    introducer = tmp_path / "our-introducer"
    tahoe("create-introducer", *listen_args(), str(introducer))
    start_node(introducer, started_pids)
    furl = (introducer / "private" / "introducer.furl").read_text().strip()
    storage_dirs = []
    for index in range(3):
        node = tmp_path / f"our-storage{index}"
        tahoe("create-node", *listen_args(), "--webport=none", f"--nickname=ours{index}", f"--introducer={furl}", str(node))
        start_node(node, started_pids)
        storage_dirs.append(node)
    client_dir = tmp_path / "real-client"
    web_port = harness.create_real_client(client_dir, furl, needed=2, happy=3, total=3)
    client = harness.start_real_node(client_dir)
    try:
        web_url = f"http://127.0.0.1:{web_port}/"
        wait_for(lambda: statuses(web_url).count(HTTP_STATUS) == 3, 90, "the real client to reach our 3 servers over HTTP")
        cache = (client_dir / "private" / "introducer_default_cache.yaml").read_text()
        assert cache.count("anonymous-storage-NURLs") == 3, "each of our servers announced its NURLs"

        def real(*args: str) -> str:
            return harness.run_tahoe("-d", str(client_dir), *args).stdout

        source = tmp_path / "big.bin"
        source.write_bytes(os.urandom(2 * 1024 * 1024 + 12345))  # three segments of 1 MiB
        cap = real("put", str(source)).strip()
        out = tmp_path / "big.out"
        real("get", cap, str(out))
        assert out.read_bytes() == source.read_bytes()
        shares = [p for d in storage_dirs for p in (d / "storage" / "shares").rglob("*") if p.is_file() and p.name.isdigit()]
        assert len(shares) == 3, "one share on each of our servers"

        small = tmp_path / "small.txt"
        small.write_text("a mutable file over HTTP\n")
        mutable_cap = real("put", "--mutable", str(small)).strip()
        assert mutable_cap.startswith("URI:SSK:")
        assert real("get", mutable_cap) == small.read_text()
        small.write_text("the same mutable file, changed\n")
        real("put", str(small), mutable_cap)
        assert real("get", mutable_cap) == small.read_text()

        directory = real("mkdir").strip()
        real("put", str(small), directory + "/file.txt")
        assert real("ls", directory).split() == ["file.txt"]
        assert statuses(web_url).count(HTTP_STATUS) == 3
    finally:
        client.stop()


def test_our_client_stores_and_reads_on_real_servers_over_http(
    real_grid: harness.RealGrid, tmp_path: Path, started_pids: list[int]
) -> None:
    client = tmp_path / "our-client"
    web_port = harness.free_port()
    tahoe(
        "create-client",
        f"--introducer={real_grid.introducer_furl}",
        f"--webport=tcp:{web_port}:interface=127.0.0.1",
        "--shares-needed=1", "--shares-happy=3", "--shares-total=3",
        str(client),
    )
    start_node(client, started_pids)
    web_url = f"http://127.0.0.1:{web_port}/"
    count = len(real_grid.storage_nodes)
    wait_for(lambda: statuses(web_url).count(HTTP_STATUS) == count, 90, "our client to reach the real servers over HTTP")

    source = tmp_path / "ours.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    cap = tahoe("-d", str(client), "put", str(source)).stdout.strip()
    out = tmp_path / "real-read.bin"
    real_grid.cli("get", cap, str(out))
    assert out.read_bytes() == source.read_bytes(), "the real client reads what we stored over HTTP"
    ours = tmp_path / "our-read.bin"
    tahoe("-d", str(client), "get", cap, str(ours))
    assert ours.read_bytes() == source.read_bytes()

    real_source = tmp_path / "real.bin"
    real_source.write_bytes(os.urandom(1_500_000))
    real_cap = real_grid.cli("put", str(real_source)).stdout.strip()
    fetched = tmp_path / "fetched.bin"
    tahoe("-d", str(client), "get", real_cap, str(fetched))
    assert fetched.read_bytes() == real_source.read_bytes(), "we read over HTTP what the real client stored"


def test_force_foolscap_keeps_our_client_on_foolscap(
    real_grid: harness.RealGrid, tmp_path: Path, started_pids: list[int]
) -> None:
    client = tmp_path / "our-foolscap-client"
    web_port = harness.free_port()
    tahoe(
        "create-client",
        f"--introducer={real_grid.introducer_furl}",
        f"--webport=tcp:{web_port}:interface=127.0.0.1",
        str(client),
    )
    config = client / "tahoe.cfg"
    config.write_text(config.read_text().replace("[client]\n", "[client]\nforce_foolscap = true\n", 1))
    start_node(client, started_pids)
    web_url = f"http://127.0.0.1:{web_port}/"
    count = len(real_grid.storage_nodes)
    wait_for(lambda: sum(s.endswith("via tcp") for s in statuses(web_url)) == count, 90, "our client on Foolscap")
