"""Test helpers: our storage servers on foolscap Tubs listening on 127.0.0.1, in the test's reactor, and
`Grid`, ten of them reached in-process, over real Foolscap or over real HTTPS.

The immutable, mutable and check/repair suites take the ``grid`` fixture,
which runs each of their tests once per transport in `TRANSPORTS`; every
client is a `FaultyStorageClient`, so the tests' fault switches (``stopped``,
``fail_writes_after``) and read counts work the same over every transport.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import Clock

from lafs.core import base32, crypto, hashes
from lafs.core.nurl import nurls_for_hints
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.https import HTTPSHandoff, SharedPortEndpoint, pem_spki_hash
from lafs.mutable.filenode import MutableContext
from lafs.mutable.keys import KeyPool
from lafs.storage.announcement import permutation_seed_for, storage_announcement
from lafs.storage.foolscap_server import FoolscapStorageServer
from lafs.storage.http_server import HTTPStorageServer
from lafs.storage.server import StorageServer
from lafs.storage_client.fake import FaultyStorageClient, InProcessStorageClient
from lafs.storage_client.foolscap import FoolscapConnector
from lafs.storage_client.http import HTTPConnector
from lafs.storage_client.interface import StorageConnection, StorageServerClient
from lafs.tub import NodeTub


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class RunningServer:
    basedir: Path
    server: StorageServer
    tub: NodeTub
    furl: str
    server_id: str
    permutation_seed: str
    nickname: str
    nurls: list[str] = attrs.field(factory=list)
    """The HTTPS storage NURLs, when the server was started with ``http=True``."""

    @property
    def tubid(self) -> bytes:
        return base32.a2b(self.tub.getTubID())

    def announcement(self) -> dict[str, Any]:
        return {
            "nickname": self.nickname,
            **storage_announcement(self.furl, self.permutation_seed, self.nurls),
        }

    async def stop(self) -> None:
        await self.tub.stopService()


async def start_storage_server(
    basedir: Path, nickname: str, *, http: bool = False, cert_data: str | None = None, **server_options: Any
) -> RunningServer:
    """A storage server on a Tub; with ``http`` it also serves HTTPS on the Tub's port and announces NURLs.

    ``cert_data`` is the Tub's certificate (and so its identity); a new one is made without it.
    """
    basedir.mkdir(parents=True, exist_ok=True)
    tub = NodeTub(certData=cert_data)
    port = free_port()
    https = HTTPSHandoff()
    if http:
        tub.listenOn(SharedPortEndpoint(serverFromString(reactor, f"tcp:{port}:interface=127.0.0.1"), https, reactor))
    else:
        tub.listenOn(f"tcp:{port}:interface=127.0.0.1")
    tub.setLocation(f"tcp:127.0.0.1:{port}")
    tub.startService()

    nodeid = base32.a2b(tub.getTubID())
    server = StorageServer.on_disk(str(basedir / "storage"), nodeid, **server_options)
    server.setServiceParent(tub)
    swissnum = base32.b2a(os.urandom(20))
    furl = tub.registerReference(FoolscapStorageServer(server), name=swissnum)
    nurls: list[str] = []
    if http:
        https.serve(HTTPStorageServer(server, swissnum.encode("ascii")).site(), tub.getCertData())
        nurls = nurls_for_hints(pem_spki_hash(tub.getCertData()), [f"tcp:127.0.0.1:{port}"], swissnum)
    seed_key = crypto.ed25519_generate()
    pubkey = crypto.ed25519_public_to_string(crypto.ed25519_public_from_private(seed_key))
    seed = permutation_seed_for(str(basedir), pubkey)
    server_id = "v0-" + pubkey[len(b"pub-v0-") :].decode()
    return RunningServer(basedir, server, tub, furl, server_id, seed, nickname, nurls)


def servers_yaml(servers: list[RunningServer]) -> dict[str, Any]:
    """The ``private/servers.yaml`` content that points a client at exactly these servers."""
    return {"storage": {s.server_id: {"ann": s.announcement()} for s in servers}}


class RemoteError(Exception):
    """A remote call failed; the message carries the remote exception's type and text."""


async def call(rref: Any, method: str, *args: Any, **options: Any) -> Any:
    """``rref.callRemote`` whose remote failures arrive as RemoteError (foolscap's copied
    failures cannot be re-raised by ``await`` on current Twisted)."""

    def convert(failure: Any) -> None:
        raise RemoteError(f"{failure.type}: {failure.value}")

    return await rref.callRemote(method, *args, **options).addErrback(convert)


TRANSPORTS = ("in-process", "foolscap", "http")
KEYS = KeyPool(reactor, size=2)
GRID_EPOCH = 1_700_000_000
"""The servers' (fake) clock starts here, so lease times are realistic."""
_TUB_CERTIFICATES: dict[str, str] = {}


def tub_certificate(role: str) -> str:
    """The Tub certificate (so the identity) of a grid's server or client in ``role``, made once per
    test run: a new RSA key for every Tub of every test was most of the time the network grids took."""
    if role not in _TUB_CERTIFICATES:
        _TUB_CERTIFICATES[role] = NodeTub().getCertData()
    return _TUB_CERTIFICATES[role]


async def sleep(seconds: float) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


async def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20, poll: float = 0.05) -> None:
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await sleep(poll)
        waited += poll


class Grid:
    """Storage servers and a client for each, all reached over one transport.

    ``Grid(base, count)`` is an in-process grid, ready at once; `start_grid`
    makes one over any transport.  ``clients`` is in the order the servers were
    made; `permuted` gives Tahoe's order for a storage index.
    """

    def __init__(self, base: Path, count: int = 10, *, transport: str = "in-process") -> None:
        self.base = base
        self.transport = transport
        self.clock = Clock()
        self.clock.advance(GRID_EPOCH)
        self.clients: list[FaultyStorageClient] = []
        self._running: list[RunningServer] = []
        self._connections: list[StorageConnection] = []
        self._client_tub: NodeTub | None = None
        self._made = 0
        if transport == "in-process":
            self.clients = [self._in_process_server() for _ in range(count)]

    def _in_process_server(self) -> FaultyStorageClient:
        self._made += 1
        server = StorageServer.on_disk(str(self.base / f"s{self._made - 1}"), bytes([self._made]) * 20, clock=self.clock)
        return FaultyStorageClient(InProcessStorageClient(server, f"v0-server{self._made - 1:02d}"), server)

    async def _network_server(self) -> FaultyStorageClient:
        self._made += 1
        index = self._made - 1
        running = await start_storage_server(
            self.base / f"s{index}",
            f"server{index}",
            http=self.transport == "http",
            cert_data=tub_certificate(f"server {index}"),
            clock=self.clock,
        )
        self._running.append(running)
        if self.transport == "http":
            connector: Any = HTTPConnector(reactor)
        else:
            if self._client_tub is None:
                self._client_tub = NodeTub(certData=tub_certificate("client"))
                self._client_tub.startService()
            connector = FoolscapConnector(self._client_tub)
        connected: list[StorageServerClient] = []
        self._connections.append(
            connector.connect(running.server_id, running.announcement(), connected.append, lambda client: None)
        )
        await wait_for(
            lambda: bool(connected),
            f"a {self.transport} connection to {running.nickname}",
            poll=0.01,
        )
        return FaultyStorageClient(connected[0], running.server)

    async def new_server(self) -> FaultyStorageClient:
        """A client for one more, empty, server (not added to ``clients``)."""
        if self.transport == "in-process":
            return self._in_process_server()
        return await self._network_server()

    async def replace(self, indexes: list[int]) -> None:
        """Servers ``indexes`` leave the grid and empty new ones (new IDs) take their places."""
        for i in indexes:
            self.clients[i] = await self.new_server()

    async def stop(self) -> None:
        for connection in self._connections:
            connection.stop()
        if self._client_tub is not None:
            await self._client_tub.stopService()
        for running in self._running:
            await running.stop()

    def permuted(self, storage_index: bytes) -> list[FaultyStorageClient]:
        return sorted(
            self.clients,
            key=lambda c: hashes.permute_server_hash(storage_index, c.server_id.encode()),
        )

    def shares(self, storage_index: bytes) -> list[tuple[FaultyStorageClient, int, Path]]:
        """Every share file of ``storage_index`` on the grid: (its server's client, share number, path)."""
        encoded = base32.b2a(storage_index)
        found = []
        for client in self.clients:
            bucket = Path(client.server.backend.shares_dir) / encoded[:2] / encoded
            found += [(client, int(p.name), p) for p in sorted(bucket.glob("[0-9]*"))]
        return found

    def share_files(self, storage_index: bytes) -> list[Path]:
        return [path for _, _, path in self.shares(storage_index)]

    def share_path(self, client: FaultyStorageClient, storage_index: bytes, shnum: int) -> Path:
        encoded = base32.b2a(storage_index)
        return Path(client.server.backend.shares_dir) / encoded[:2] / encoded / str(shnum)

    def advisories(self) -> list[str]:
        """The names of the corruption advisories the servers received."""
        out = []
        for client in self.clients:
            directory = Path(client.server.backend.corruption_dir)
            out += [p.name for p in directory.glob("*")] if directory.exists() else []
        return out

    def context(self) -> MutableContext:
        return MutableContext(
            servers_for=self.permuted,
            secrets=ClientSecrets(b"l" * 32, b"c" * 32),
            params=EncodingParameters(3, 7, 10),
            reactor=reactor,
            key_pool=KEYS,
        )


async def start_grid(base: Path, count: int = 10, transport: str = "in-process") -> Grid:
    grid = Grid(base, count, transport=transport)
    if transport != "in-process":
        try:
            grid.clients = [await grid.new_server() for _ in range(count)]
        except BaseException:
            await grid.stop()
            raise
    return grid


@pytest_twisted.async_yield_fixture(params=TRANSPORTS)
async def grid(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A ten-server grid, once over each transport."""
    started = await start_grid(tmp_path, 10, request.param)
    try:
        yield started
    finally:
        await started.stop()
