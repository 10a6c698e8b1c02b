"""Node lifecycle end to end in subprocesses: create, start, see the grid, stop, restart."""

from __future__ import annotations

from pathlib import Path

from tests.cli.nodes import (
    connected,
    free_port,
    listen_args,
    pid_of,
    start_node,
    tahoe,
    wait_for,
    welcome,
)


def test_grid_lifecycle(tmp_path: Path, started_pids: list[int]) -> None:
    introducer = tmp_path / "introducer"
    out = tahoe("create-introducer", *listen_args(), str(introducer)).stdout
    assert "created" in out
    assert (introducer / "tahoe-introducer.tac").exists()
    start_node(introducer, started_pids)
    furl = (introducer / "private" / "introducer.furl").read_text().strip()
    assert furl.startswith("pb://")

    nodes = [tmp_path / f"node{i}" for i in range(3)]
    for index, node in enumerate(nodes):
        tahoe("create-node", *listen_args(), "--webport=none", f"--nickname=node{index}", f"--introducer={furl}", str(node))
        start_node(node, started_pids)
    client = tmp_path / "client"
    web_port = free_port()
    tahoe("create-client", f"--introducer={furl}", f"--webport=tcp:{web_port}:interface=127.0.0.1", str(client))
    start_node(client, started_pids)
    web_url = (client / "node.url").read_text().strip()
    assert web_url == f"http://127.0.0.1:{web_port}/"
    wait_for(lambda: connected(web_url) == 3, 60, "3 connected servers")
    data = welcome(web_url)
    assert sorted(s["nickname"] for s in data["servers"]) == ["node0", "node1", "node2"]
    assert data["introducers"]["statuses"][0].startswith("Connected")
    for node in nodes:
        assert (node / "private" / "storage.furl").exists()
        assert len((node / "permutation-seed").read_text().strip()) == 84
        assert (node / "node.pubkey").read_text().startswith("pub-v0-")

    # The introducer goes away: clients keep their server connections.
    tahoe("stop", str(introducer))
    wait_for(lambda: not welcome(web_url)["introducers"]["statuses"][0].startswith("Connected"), 30, "introducer loss")
    assert connected(web_url) == 3
    # It comes back on the same fURL and introduces a newcomer.
    start_node(introducer, started_pids)
    assert (introducer / "private" / "introducer.furl").read_text().strip() == furl
    late = tmp_path / "late"
    tahoe("create-node", *listen_args(), "--webport=none", "--nickname=late", f"--introducer={furl}", str(late))
    start_node(late, started_pids)
    wait_for(lambda: connected(web_url) == 4, 90, "the late node to be introduced")

    # Stop everything, start it again: the client reconnects to every server.
    all_nodes = [client, late, *nodes, introducer]
    for node in all_nodes:
        assert tahoe("stop", str(node)).returncode == 0
        assert pid_of(node) is None
    for node in reversed(all_nodes):
        start_node(node, started_pids)
    wait_for(lambda: connected(web_url) == 4, 90, "reconnection after restart")
    for node in all_nodes:
        tahoe("stop", str(node))


def test_stop_on_a_node_that_is_not_running(tmp_path: Path) -> None:
    node = tmp_path / "node"
    tahoe("create-client", "--webport=none", str(node))
    result = tahoe("stop", str(node), check=False)
    assert result.returncode == 2
    assert "does not look like a running node directory" in result.stderr


def test_create_refuses_bad_options_and_existing_dirs(tmp_path: Path) -> None:
    result = tahoe("create-node", "--listen=tcp", str(tmp_path / "a"), check=False)
    assert result.returncode == 1 and "--hostname" in result.stderr
    result = tahoe("create-node", "--hostname=h", "--port=tcp:1", str(tmp_path / "b"), check=False)
    assert result.returncode == 1
    result = tahoe("create-client", "--shares-needed=5", "--shares-total=3", str(tmp_path / "c"), check=False)
    assert result.returncode == 1 and "k <= N" in result.stderr
    result = tahoe("create-node", "--listen=tor", str(tmp_path / "d"), check=False)
    assert result.returncode == 1 and "not supported" in result.stderr
    tahoe("create-client", str(tmp_path / "e"))
    result = tahoe("create-client", str(tmp_path / "e"), check=False)
    assert result.returncode == 1 and "already exists" in result.stderr


def test_run_refuses_a_directory_that_is_not_a_node(tmp_path: Path) -> None:
    result = tahoe("run", str(tmp_path), check=False)
    assert result.returncode == 1
    assert "does not look like a node directory" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_value_names_file_section_and_key(tmp_path: Path) -> None:
    node = tmp_path / "node"
    tahoe("create-client", "--webport=none", str(node))
    cfg = node / "tahoe.cfg"
    cfg.write_text(cfg.read_text().replace("shares.needed = 3", "shares.needed = three"))
    result = tahoe("run", "--allow-stdin-close", str(node), check=False)
    assert result.returncode == 1
    assert "[client]shares.needed" in result.stderr and "tahoe.cfg" in result.stderr
    assert "Traceback" not in result.stderr


def test_static_servers_without_an_introducer(tmp_path: Path, started_pids: list[int]) -> None:
    import yaml

    servers = {}
    for index in range(2):
        node = tmp_path / f"node{index}"
        tahoe("create-node", *listen_args(), "--webport=none", f"--nickname=static{index}", str(node))
        start_node(node, started_pids)
        pubkey = (node / "node.pubkey").read_text().strip()
        servers["v0-" + pubkey[len("pub-v0-") :]] = {
            "ann": {
                "anonymous-storage-FURL": (node / "private" / "storage.furl").read_text().strip(),
                "nickname": f"static{index}",
                "permutation-seed-base32": (node / "permutation-seed").read_text().strip(),
            }
        }
    client = tmp_path / "client"
    web_port = free_port()
    tahoe("create-client", f"--webport=tcp:{web_port}:interface=127.0.0.1", str(client))
    (client / "private" / "servers.yaml").write_text(yaml.safe_dump({"storage": servers}))
    start_node(client, started_pids)
    web_url = f"http://127.0.0.1:{web_port}/"
    wait_for(lambda: connected(web_url) == 2, 60, "the static servers")
    assert welcome(web_url)["introducers"]["statuses"] == []


def test_run_exits_when_stdin_closes_unless_allowed(tmp_path: Path) -> None:
    import subprocess
    import sys

    node = tmp_path / "node"
    tahoe("create-client", "--webport=none", str(node))
    result = subprocess.run(
        [sys.executable, "-m", "lafs", "run", str(node)], stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    assert result.returncode == 0
    assert pid_of(node) is None


def test_a_taken_port_is_a_clear_start_up_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        node = tmp_path / "node"
        tahoe(
            "create-node", "--listen=tcp", f"--port=tcp:{port}:interface=127.0.0.1",
            f"--location=tcp:127.0.0.1:{port}", "--webport=none", str(node),
        )
        result = tahoe("start", str(node), check=False)
    assert result.returncode == 1
    assert "exited at start-up" in result.stderr and "[node]tub.port" in result.stderr
    assert "Traceback" not in result.stderr
