"""Mutable files across implementations: the real Tahoe 1.20 parses, reads and updates what we write.

``tahoe debug dump-share`` parses our share files; the real Tahoe's own
mutable engine (its NodeMaker over in-memory servers, run in the oracle venv)
reads files our engine published, updates an MDMF one in place, and our
engine reads the shares it leaves.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest_twisted

from lafs.core import caps, hashes
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.mutable.common import CapKeys, write_secrets
from lafs.mutable.filenode import MutableContext
from lafs.mutable.keys import generate_private_key
from lafs.storage_client.foolscap import FoolscapStorageClient, tubid_from_furl
from lafs.storage_client.interface import ServerVersion
from lafs.tub import NodeTub
from tests.interop import harness
from tests.mutable_grid import SEG, read, share_bytes
from tests.storage_grid import Grid

TAHOE_SIDE = r'''
import base64, hashlib, json, sys
from twisted.internet import task, defer
from allmydata import client
from allmydata.node import config_from_string
from allmydata.nodemaker import NodeMaker
from allmydata.storage_client import StorageFarmBroker
from allmydata.mutable.publish import MutableData
from allmydata.interfaces import SDMF_VERSION
from allmydata.util import base32


class MemoryServer:
    def __init__(self, shares):
        self.shares = shares

    def callRemote(self, name, *args, **kwargs):
        return defer.maybeDeferred(getattr(self, name), *args, **kwargs)

    def callRemoteOnly(self, name, *args, **kwargs):
        self.callRemote(name, *args, **kwargs)

    def slot_readv(self, si, shnums, readv):
        return {n: [d[o:o + l] for (o, l) in readv] for n, d in self.shares.items() if not shnums or n in shnums}

    def slot_testv_and_readv_and_writev(self, si, secrets, tw_vectors, read_vector):
        old = {n: [d[o:o + l] for (o, l) in read_vector] for n, d in self.shares.items()}
        for shnum, (testv, writev, new_length) in tw_vectors.items():
            for (o, l, op, specimen) in testv:
                if self.shares.get(shnum, b"")[o:o + l] != specimen:
                    return (False, old)
        for shnum, (testv, writev, new_length) in tw_vectors.items():
            data = bytearray(self.shares.get(shnum, b""))
            for (o, d) in writev:
                if len(data) < o:
                    data += b"\x00" * (o - len(data))
                data[o:o + len(d)] = d
            self.shares[shnum] = bytes(data)
        return (True, old)

    def advise_corrupt_share(self, *args):
        sys.stderr.write("corruption reported: %r\n" % (args,))


@defer.inlineCallbacks
def main(reactor):
    job = json.load(open(sys.argv[1]))
    broker = StorageFarmBroker(True, None, config_from_string("/dev/null", "tub.port", ""))
    servers = []
    for i, held in enumerate(job["servers"]):
        peerid = base32.b2a(hashlib.sha256(b"peer %d" % i).digest()[:20])
        server = MemoryServer({int(n): base64.b64decode(s) for n, s in held.items()})
        servers.append(server)
        ann = {"anonymous-storage-FURL": "pb://%s@nowhere/fake" % peerid.decode(), "permutation-seed-base32": peerid}
        broker.test_add_rref(peerid, server, ann)
    nm = NodeMaker(broker, client.SecretHolder(b"lease secret", b"convergence secret"), None, None, None,
                   {"k": 3, "n": 10}, SDMF_VERSION, client.KeyGenerator())
    node = nm.create_from_cap(job["cap"].encode())
    data = yield node.download_best_version()
    out = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    if job.get("update"):
        offset, text = job["update"]
        version = yield node.get_best_mutable_version()
        yield version.update(MutableData(text.encode()), offset)
        out["servers"] = [{str(n): base64.b64encode(d).decode() for n, d in s.shares.items()} for s in servers]
    json.dump(out, sys.stdout)


task.react(main)
'''


def export(grid: Grid, storage_index: bytes) -> list[dict[str, str]]:
    held: list[dict[str, str]] = [{} for _ in grid.clients]
    for client, shnum, path in grid.shares(storage_index):
        held[grid.clients.index(client)][str(shnum)] = base64.b64encode(share_bytes(path)).decode()
    return held


def tahoe(tmp_path: Path, job: dict[str, object]) -> dict[str, object]:
    job_file = tmp_path / "job.json"
    job_file.write_text(json.dumps(job))
    answer: dict[str, object] = json.loads(harness.run_tahoe_python(TAHOE_SIDE, str(job_file)))
    return answer


@pytest_twisted.ensureDeferred
async def test_dump_share_reads_our_mutable_shares(tahoe_oracle: Path, tmp_path: Path) -> None:
    grid = Grid(tmp_path)
    context = grid.context()
    for mdmf, kind in [(False, "SDMF"), (True, "MDMF")]:
        data = os.urandom(300000)
        node = await context.create_mutable_file(data, mdmf=mdmf, private_key=generate_private_key())
        await node.overwrite(data[:200000])
        for _, _, path in grid.shares(node.get_storage_index())[:2]:
            dumped = harness.run_tahoe("debug", "dump-share", str(path)).stdout
            assert f" share_type: {kind}" in dumped
            assert " seqnum: 2" in dumped and " datalen: 200000" in dumped
            assert " required_shares: 3" in dumped and " total_shares: 10" in dumped
            assert f"verify-cap: {node.get_verify_uri()}" in dumped
            assert " ownerid: 1" in dumped


@pytest_twisted.ensureDeferred
async def test_real_tahoe_reads_our_files_and_we_read_its_update(tahoe_oracle: Path, tmp_path: Path) -> None:
    grid = Grid(tmp_path / "ours")
    context = grid.context()
    sdmf_data = os.urandom(5000)
    sdmf = await context.create_mutable_file(sdmf_data, mdmf=False, private_key=generate_private_key())
    answer = tahoe(tmp_path, {"cap": sdmf.get_readonly_uri(), "servers": export(grid, sdmf.get_storage_index())})
    assert answer == {"sha256": hashlib.sha256(sdmf_data).hexdigest(), "size": len(sdmf_data)}

    # An MDMF file that our engine has updated in place (seqnum 2), read and then updated by Tahoe.
    data = bytearray(os.urandom(2 * SEG + 5000))
    mdmf = await context.create_mutable_file(bytes(data), mdmf=True, private_key=generate_private_key())
    await mdmf.update(SEG - 10, b"ours" * 10)
    data[SEG - 10 : SEG + 30] = b"ours" * 10
    answer = tahoe(
        tmp_path,
        {"cap": mdmf.get_uri(), "servers": export(grid, mdmf.get_storage_index()), "update": [2 * SEG + 4990, "theirs" * 5]},
    )
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()
    data[2 * SEG + 4990 :] = b"theirs" * 5

    # Plant what Tahoe left on a fresh grid of ours and read it back.
    theirs = Grid(tmp_path / "theirs")
    write_cap = mdmf.cap
    assert isinstance(write_cap, caps.MutableWriteCap)
    keys = CapKeys.from_cap(write_cap)
    assert keys.writekey is not None
    servers = answer["servers"]
    assert isinstance(servers, list)
    for client, held in zip(theirs.clients, servers, strict=True):
        for shnum, encoded in held.items():
            secrets = write_secrets(keys.writekey, keys.storage_index, b"l" * 32, client)
            vectors = {int(shnum): ([], [(0, base64.b64decode(encoded))], None)}
            assert (await client.slot_testv_and_readv_and_writev(keys.storage_index, secrets, vectors, [])).success
    node = theirs.context().node_for_cap(write_cap)
    assert await read(node) == bytes(data)
    assert theirs.advisories() == []


async def connect_real_servers(grid: harness.RealGrid) -> tuple[Any, list[FoolscapStorageClient]]:
    """Our Tub, connected straight to each real storage node's ``private/storage.furl``."""
    tub = NodeTub()
    tub.startService()
    clients = []
    for index, node in enumerate(grid.storage_nodes):
        furl = node.read_private("storage.furl")
        rref = await tub.getReference(furl)
        version = ServerVersion.from_dict(await rref.callRemote("get_version"))
        clients.append(FoolscapStorageClient(rref, f"real-storage{index}", version, tubid_from_furl(furl)))
    return tub, clients


@pytest_twisted.ensureDeferred
async def test_our_engine_on_real_storage_servers_with_a_real_client(
    real_grid: harness.RealGrid, tmp_path: Path
) -> None:
    """Real servers check our write enablers and test vectors; the real client reads what we write and vice versa."""
    from twisted.internet import reactor, threads

    tub, servers = await connect_real_servers(real_grid)
    try:
        context = MutableContext(
            servers_for=lambda si: sorted(servers, key=lambda s: hashes.permute_server_hash(si, s.lease_seed)),
            secrets=ClientSecrets(os.urandom(32), os.urandom(32)),
            params=EncodingParameters(3, 7, 10),
            reactor=reactor,
        )
        out = tmp_path / "out.bin"
        for mdmf in (False, True):
            data = bytearray(os.urandom(2 * SEG + 100))
            node = await context.create_mutable_file(bytes(data), mdmf=mdmf)
            await node.update(SEG - 5, b"patch" * 4)
            data[SEG - 5 : SEG + 15] = b"patch" * 4
            await threads.deferToThread(real_grid.cli, "get", node.get_readonly_uri(), str(out))
            assert out.read_bytes() == bytes(data)
            await node.overwrite(b"small now")
            await threads.deferToThread(real_grid.cli, "get", node.get_uri(), str(out))
            assert out.read_bytes() == b"small now"

        # A file the real client made (1-of-3 on this grid), updated in place by us, read by it.
        source = tmp_path / "theirs.bin"
        theirs = bytearray(os.urandom(SEG + 10))
        source.write_bytes(bytes(theirs))
        put = await threads.deferToThread(real_grid.cli, "put", "--mutable", "--format=MDMF", str(source))
        cap = caps.from_string(put.stdout.strip())
        assert isinstance(cap, caps.MDMFWriteCap)
        node = context.node_for_cap(cap)
        assert await read(node) == bytes(theirs)
        await node.update(len(theirs) - 3, b"grown by lafs")
        theirs[len(theirs) - 3 :] = b"grown by lafs"
        await threads.deferToThread(real_grid.cli, "get", node.get_uri(), str(out))
        assert out.read_bytes() == bytes(theirs)
    finally:
        await tub.stopService()
