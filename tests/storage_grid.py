"""Test helper: our storage servers on foolscap Tubs listening on 127.0.0.1, in the test's reactor."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString

from lafs.core import base32, crypto
from lafs.core.nurl import nurls_for_hints
from lafs.https import HTTPSHandoff, SharedPortEndpoint, pem_spki_hash
from lafs.storage.announcement import permutation_seed_for, storage_announcement
from lafs.storage.foolscap_server import FoolscapStorageServer
from lafs.storage.http_server import HTTPStorageServer
from lafs.storage.server import StorageServer
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
        return {"nickname": self.nickname, **storage_announcement(self.furl, self.permutation_seed, self.nurls)}

    async def stop(self) -> None:
        await self.tub.stopService()


async def start_storage_server(basedir: Path, nickname: str, *, http: bool = False, **server_options: Any) -> RunningServer:
    """A storage server on a Tub; with ``http`` it also serves HTTPS on the Tub's port and announces NURLs."""
    basedir.mkdir(parents=True, exist_ok=True)
    tub = NodeTub()
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
