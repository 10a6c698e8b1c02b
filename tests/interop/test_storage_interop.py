"""A real Tahoe 1.20 client on a grid made only of OUR storage servers (private/servers.yaml)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest_twisted
import yaml
from twisted.internet import threads

from tests.interop import harness
from tests.storage_grid import RunningServer, servers_yaml, start_storage_server

NEEDED, HAPPY, TOTAL = 2, 3, 4


def in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    return threads.deferToThread(function, *args, **kwargs)


async def start_our_grid(base: Path) -> tuple[list[RunningServer], harness.RealNode, str]:
    servers = [await start_storage_server(base / f"ours{i}", f"ours{i}") for i in range(TOTAL)]
    client_dir = base / "real-client"
    web_port = await in_thread(harness.create_real_client, client_dir, None, needed=NEEDED, happy=HAPPY, total=TOTAL)
    (client_dir / "private" / "servers.yaml").write_text(yaml.safe_dump(servers_yaml(servers)))
    client = harness.start_real_node(client_dir)
    web_url = f"http://127.0.0.1:{web_port}/"
    try:
        await in_thread(harness.wait_until, lambda: (client_dir / "node.url").exists(), 60, "the real client")
        await in_thread(harness.wait_for_servers, web_url, TOTAL, 60)
    except BaseException:
        client.stop()
        raise
    return servers, client, web_url


async def stop_all(servers: list[RunningServer], client: harness.RealNode) -> None:
    await in_thread(client.stop)
    for server in servers:
        await server.stop()


def real_cli(client: harness.RealNode, *args: str) -> Any:
    return in_thread(harness.run_tahoe, "-d", str(client.basedir), *args)


async def check_lease_secrets(servers: list[RunningServer], client: harness.RealNode, cap: str) -> None:
    """The real client's per-server lease secrets are exactly the ones our uploader derives."""
    from lafs.core import base32, caps, hashes

    lease_secret = base32.a2b(client.read_private("secret"))
    storage_index = caps.from_string_strict(cap).get_storage_index()
    assert storage_index is not None
    file_renew = hashes.file_renewal_secret_hash(hashes.my_renewal_secret_hash(lease_secret), storage_index)
    checked = 0
    for server in servers:
        for shnum in await server.server.get_buckets(storage_index):
            expected = hashes.bucket_renewal_secret_hash(file_renew, server.tubid)
            leases = await server.server.backend.get_leases(storage_index, shnum)
            assert leases.leases[0].renew_secret == hashes.hashed_lease_secret(expected)
            checked += 1
    assert checked >= NEEDED


def share_files(servers: list[RunningServer]) -> list[Path]:
    return [p for s in servers for p in (s.basedir / "storage" / "shares").rglob("*") if p.is_file() and p.name.isdigit()]


@pytest_twisted.ensureDeferred
async def test_real_client_stores_and_reads_on_our_servers(tahoe_oracle: Path, tmp_path: Path) -> None:
    servers, client, _ = await start_our_grid(tmp_path)
    try:
        for size in (1024 * 1024, 20 * 1024 * 1024):
            source = tmp_path / f"file-{size}"
            source.write_bytes(os.urandom(size))
            cap = (await real_cli(client, "put", str(source))).stdout.strip()
            assert cap.startswith("URI:CHK:")
            out = tmp_path / f"out-{size}"
            await real_cli(client, "get", cap, str(out))
            assert out.read_bytes() == source.read_bytes()
            await check_lease_secrets(servers, client, cap)

        first, second = tmp_path / "m1", tmp_path / "m2"
        first.write_bytes(b"first version " * 100)
        second.write_bytes(b"the second, longer version " * 150)
        mutable_cap = (await real_cli(client, "put", "--mutable", str(first))).stdout.strip()
        assert mutable_cap.startswith("URI:SSK:")
        await real_cli(client, "put", str(second), mutable_cap)
        assert (await real_cli(client, "get", mutable_cap)).stdout == second.read_text()

        dircap = (await real_cli(client, "mkdir")).stdout.strip()
        await real_cli(client, "put", str(first), dircap + "/child.txt")
        await real_cli(client, "mkdir", dircap + "/subdir")
        listing = (await real_cli(client, "ls", dircap)).stdout.split()
        assert sorted(listing) == ["child.txt", "subdir"]
        assert (await real_cli(client, "get", dircap + "/child.txt")).stdout == first.read_text()

        # The real `tahoe debug dump-share` parses the share files our servers wrote.
        kinds = set()
        for path in share_files(servers[:1]):
            dumped = (await in_thread(harness.run_tahoe, "debug", "dump-share", str(path))).stdout
            if "Mutable slot found" in dumped:
                kinds.add("mutable")
                assert " share_type: SDMF" in dumped and " Lease #0:" in dumped
            else:
                kinds.add("immutable")
                assert f"needed_shares: {NEEDED}" in dumped and "Lease #0: owner=0" in dumped
        assert kinds == {"mutable", "immutable"}
    finally:
        await stop_all(servers, client)


@pytest_twisted.ensureDeferred
async def test_our_server_serves_shares_a_real_server_wrote(real_grid: harness.RealGrid, tmp_path: Path) -> None:
    source = tmp_path / "from-real.bin"
    source.write_bytes(os.urandom(300_000))
    cap = (await in_thread(real_grid.cli, "put", str(source))).stdout.strip()
    servers, client, _ = await start_our_grid(tmp_path / "ours")
    try:
        # The real grid is 1-of-3: any one real server's shares are enough to read the file.
        real_shares = real_grid.storage_nodes[0].basedir / "storage" / "shares"
        ours = servers[0].basedir / "storage" / "shares"
        for bucket in real_shares.glob("??/*"):
            shutil.copytree(bucket, ours / bucket.parent.name / bucket.name, dirs_exist_ok=True)
        out = tmp_path / "out.bin"
        await real_cli(client, "get", cap, str(out))
        assert out.read_bytes() == source.read_bytes()
    finally:
        await stop_all(servers, client)
