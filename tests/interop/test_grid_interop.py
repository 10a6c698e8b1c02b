"""Mixed grids: real Tahoe 1.20 nodes and ours introduce each other and connect (issue: node lifecycle)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.nodes import connected, listen_args, start_node, tahoe, wait_for
from tests.interop import harness


def test_real_nodes_join_our_introducer(tahoe_oracle: Path, tmp_path: Path, started_pids: list[int]) -> None:
    introducer = tmp_path / "our-introducer"
    tahoe("create-introducer", *listen_args(), str(introducer))
    start_node(introducer, started_pids)
    furl = (introducer / "private" / "introducer.furl").read_text().strip()
    real_nodes: list[harness.RealNode] = []
    try:
        for index in range(2):
            node_dir = tmp_path / f"real-storage{index}"
            harness.create_real_storage_node(node_dir, furl, f"real{index}")
            real_nodes.append(harness.start_real_node(node_dir))
        client_dir = tmp_path / "real-client"
        web_port = harness.create_real_client(client_dir, furl, needed=1, happy=1, total=2)
        real_nodes.append(harness.start_real_node(client_dir))
        web_url = f"http://127.0.0.1:{web_port}/"
        harness.wait_for_servers(web_url, 2, 90)
        statuses = harness.get_json(web_url + "?t=json")["introducers"]["statuses"]
        assert statuses and statuses[0].startswith("Connected")
        # And the grid works: the real client stores and reads a file.
        source = tmp_path / "f"
        source.write_bytes(b"through our introducer " * 1000)
        cap = harness.run_tahoe("-d", str(client_dir), "put", str(source)).stdout.strip()
        assert harness.run_tahoe("-d", str(client_dir), "get", cap).stdout == source.read_text()
    finally:
        for node in real_nodes:
            node.stop()


def test_our_client_joins_a_real_introducer(real_grid: harness.RealGrid, tmp_path: Path, started_pids: list[int]) -> None:
    client = tmp_path / "our-client"
    web_port = harness.free_port()
    tahoe(
        "create-client",
        f"--introducer={real_grid.introducer_furl}",
        f"--webport=tcp:{web_port}:interface=127.0.0.1",
        str(client),
    )
    start_node(client, started_pids)
    web_url = f"http://127.0.0.1:{web_port}/"
    wait_for(lambda: connected(web_url) == len(real_grid.storage_nodes), 90, "the real storage servers")


def test_our_run_runs_a_real_node_dir_that_joins_a_real_grid(
    real_grid: harness.RealGrid, tmp_path: Path, started_pids: list[int]
) -> None:
    node_dir = tmp_path / "made-by-real-tahoe"
    harness.create_real_storage_node(node_dir, real_grid.introducer_furl, "ours-in-real-grid")
    start_node(node_dir, started_pids)
    count = len(real_grid.storage_nodes) + 1
    # The real client sees our node, started from the real node directory, as a connected server.
    harness.wait_for_servers(real_grid.web_url, count, 90)
    servers = harness.get_json(real_grid.web_url + "?t=json")["servers"]
    assert "ours-in-real-grid" in {s["nickname"] for s in servers}
    tahoe("stop", str(node_dir))
    wait_for(lambda: connected(real_grid.web_url) == count - 1, 60, "the real client to notice our node leaving")


def test_real_run_runs_a_node_dir_we_created(real_grid: harness.RealGrid, tmp_path: Path) -> None:
    """The other direction: a storage node made by OUR create-node runs under the REAL `tahoe run`."""
    node_dir = tmp_path / "made-by-lafs"
    tahoe(
        "create-node", *listen_args(), "--webport=none", "--nickname=lafs-made",
        f"--introducer={real_grid.introducer_furl}", str(node_dir),
    )
    real_node = harness.start_real_node(node_dir)
    try:
        count = len(real_grid.storage_nodes) + 1
        harness.wait_for_servers(real_grid.web_url, count, 90)
        servers = harness.get_json(real_grid.web_url + "?t=json")["servers"]
        assert "lafs-made" in {s["nickname"] for s in servers}
        # The real node really serves: the real client stores a file with our node in the grid.
        source = tmp_path / "f"
        source.write_bytes(b"stored with a lafs-made node in the grid " * 500)
        cap = real_grid.cli("put", str(source)).stdout.strip()
        assert real_grid.cli("get", cap).stdout == source.read_text()
    finally:
        real_node.stop()
