"""One node process: its directory, keys, Tub, and the services ``tahoe.cfg`` asks for."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable
from typing import Any

import attrs
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from lafs import isal
from lafs.client.maintenance import MaintenanceService
from lafs.client.nodemaker import NodeMaker
from lafs.client.storage_broker import StorageBroker
from lafs.config import ConfigError, NodeConfig
from lafs.core import base32, crypto
from lafs.core.errors import Base32Error
from lafs.core.nurl import nurls_for_hints
from lafs.core.params import ClientSecrets
from lafs.https import HTTPSHandoff, SharedPortEndpoint, pem_spki_hash
from lafs.introducer.client import IntroducerClient
from lafs.introducer.server import IntroducerService
from lafs.mutable.keys import KeyPool
from lafs.nodedir import free_port as _free_port
from lafs.nodedir import node_kind
from lafs.storage.announcement import permutation_seed_for, storage_announcement
from lafs.storage.foolscap_server import FoolscapStorageServer
from lafs.storage.http_server import HTTPStorageServer
from lafs.storage.server import StorageServer
from lafs.storage_client.foolscap import FoolscapConnector
from lafs.storage_client.http import HTTPConnector
from lafs.tub import NodeTub
from lafs.web.context import GatewayContext, StorageStatus
from lafs.web.server import WebGateway
from lafs.workers import reactor_workers

log = Logger()


def _random_b32(size: int = 32) -> str:
    return base32.b2a(os.urandom(size))


SWISSNUM_BYTES = 20
"""As foolscap makes them: 160 random bits, 32 base32 characters."""


def _check_port_free(port_spec: str, config_path: str) -> None:
    """Fail at start-up, naming the setting, when a ``tcp:PORT[:interface=HOST]`` port is taken.

    foolscap only reports a failed listen in its log, which would leave a node
    running that nobody can reach.
    """
    parts = port_spec.split(":")
    if parts[0] != "tcp" or len(parts) < 2 or not parts[1].isdigit() or int(parts[1]) == 0:
        return
    host = ""
    for part in parts[2:]:
        if part.startswith("interface="):
            host = part[len("interface=") :]
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, int(parts[1])))
        except OSError as e:
            raise ConfigError(f"{config_path}: [node]tub.port: cannot listen on {port_spec!r}: {e.strerror}") from None


class Node(service.MultiService):
    """A Tahoe-compatible node: introducer, storage server and/or client with a web gateway.

    Made by `build_node`, which does the file and port work; the constructor only holds the pieces.
    """

    def __init__(
        self,
        config: NodeConfig,
        kind: str,
        identity: NodeIdentity,
        tub: NodeTub,
        *,
        reactor: Any,
        https: HTTPSHandoff | None = None,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.basedir = config.basedir
        self.kind = kind
        self.identity = identity
        self.tub = tub
        tub.setServiceParent(self)
        self.storage_server: StorageServer | None = None
        self.storage_furl: str | None = None
        self.introducer_service: IntroducerService | None = None
        self.introducer_clients: list[IntroducerClient] = []
        self.storage_broker: StorageBroker | None = None
        self.node_maker: NodeMaker | None = None
        self.key_pool: KeyPool | None = None
        self.web: WebGateway | None = None
        self.maintenance: MaintenanceService | None = None
        self._permutation_seed: str | None = None
        self._foolscap_storage: FoolscapStorageServer | None = None
        self.https = https
        """Where the Tub's port sends HTTPS connections; None when the node serves no HTTP storage."""
        self.storage_swissnum: str | None = None
        self.storage_nurls: list[str] = []

    def startService(self) -> None:
        super().startService()
        if self.key_pool is not None:
            self.key_pool.start()
        if self._foolscap_storage is not None and self._permutation_seed is not None and self.tub.locationHints:
            self.storage_furl = self.tub.registerReference(
                self._foolscap_storage, name=self.storage_swissnum, furlFile=self.config.private_path("storage.furl")
            )
            if self.https is not None and self.https.factory is not None and self.storage_swissnum is not None:
                spki = pem_spki_hash(self.tub.getCertData())
                self.storage_nurls = nurls_for_hints(spki, list(self.tub.locationHints), self.storage_swissnum)
            announcement = storage_announcement(self.storage_furl, self._permutation_seed, self.storage_nurls)
            ann = {"nickname": self.config.nickname, **announcement}
            for client in self.introducer_clients:
                client.publish("storage", ann)
        log.info("node started in {basedir}", basedir=self.basedir)

    def when_web_listening(self) -> defer.Deferred[Any]:
        if self.web is None:
            return defer.succeed(None)
        return self.web.when_listening()


@attrs.frozen
class NodeIdentity:
    """A node's keys and secrets, read from (or first written to) ``private/``."""

    signing_seed: bytes = attrs.field(repr=False)
    pubkey_string: bytes
    secrets: ClientSecrets | None
    """None on an introducer, which has no client secrets."""

    @property
    def server_id(self) -> str:
        return "v0-" + base32.b2a(crypto.ed25519_public_from_string(self.pubkey_string))


def build_node(basedir: str, *, reactor: Any) -> Node:
    """Read the node directory, write what is missing (keys, secrets, port), listen, and assemble the services."""
    config = NodeConfig.load(os.path.abspath(basedir))
    kind = node_kind(config.basedir)
    os.makedirs(config.private_path(""), mode=0o700, exist_ok=True)
    os.makedirs(config.path("logs"), exist_ok=True)
    identity = load_identity(config, kind)
    serves_https = kind != "introducer" and config.storage.enabled and not config.storage.force_foolscap
    https = HTTPSHandoff() if serves_https else None
    tub = make_tub(config, kind, https=https, reactor=reactor)
    config.write_file("my_nodeid", tub.getTubID() + "\n")
    node = Node(config, kind, identity, tub, reactor=reactor, https=https)
    if kind == "introducer":
        node.introducer_service = IntroducerService(tub, config.basedir)
        node.introducer_service.setServiceParent(node)
    else:
        _add_client(node, config, identity, tub, reactor)
        if config.storage.enabled:
            _add_storage(node, config, identity, base32.a2b(tub.getTubID()), reactor)
    if config.node.web_port is not None:
        context = GatewayContext(
            reactor=reactor,
            nickname=config.nickname,
            config_path=config.config_path,
            node_url_path=config.path("node.url"),
            introducer_statuses=lambda: [client.connection_status() for client in node.introducer_clients],
            node_maker=node.node_maker,
            storage_broker=node.storage_broker,
            storage_status=None if node.storage_server is None else _storage_status(node.storage_server, config),
            maintenance_status=None if node.maintenance is None else node.maintenance.status,
        )
        node.web = WebGateway(context, config.node.web_port)
        node.web.setServiceParent(node)
    return node


def load_identity(config: NodeConfig, kind: str) -> NodeIdentity:
    """The node's signing key and (on clients) its lease and convergence secrets, made on first start."""
    privkey = config.read_private("node.privkey")
    if privkey is None:
        seed = crypto.ed25519_generate()
        config.write_private("node.privkey", crypto.ed25519_private_to_string(seed).decode() + "\n")
    else:
        try:
            seed = crypto.ed25519_private_from_string(privkey)
        except crypto.KeyFormatError as e:
            raise ConfigError(f"{config.private_path('node.privkey')}: {e}") from None
    pubkey_string = crypto.ed25519_public_to_string(crypto.ed25519_public_from_private(seed))
    if kind == "introducer":
        return NodeIdentity(seed, pubkey_string, None)
    config.write_file("node.pubkey", pubkey_string.decode() + "\n")
    if config.read_private("secret") is None:
        config.write_private("secret", _random_b32() + "\n")
    if not os.path.exists(config.private_path("convergence")):
        config.write_private("convergence", _random_b32() + "\n")
    if config.read_private("api_auth_token") is None:
        token = base64.urlsafe_b64encode(os.urandom(32)).decode()
        config.write_private("api_auth_token", token + "\n")
    secrets = ClientSecrets(_private_b32(config, "secret"), _private_b32(config, "convergence"))
    return NodeIdentity(seed, pubkey_string, secrets)


def _private_b32(config: NodeConfig, name: str) -> bytes:
    try:
        return base32.a2b(config.read_private(name) or "")
    except Base32Error:
        raise ConfigError(f"{config.private_path(name)}: not valid base32") from None


def make_tub(config: NodeConfig, kind: str, *, https: HTTPSHandoff | None = None, reactor: Any = None) -> NodeTub:
    """The node's Tub, listening where ``[node]tub.port`` says (a free port, remembered, when it says nothing).

    With ``https`` each port also serves HTTPS (the HTTP storage protocol), as Tahoe 1.20's do.
    """
    settings = config.node
    tub = NodeTub(certFile=config.private_path("node.pem"))
    tub.setOption("logLocalFailures", True)
    tub.setOption("logRemoteFailures", True)
    if settings.keepalive_timeout:
        tub.setOption("keepaliveTimeout", settings.keepalive_timeout)
    if settings.disconnect_timeout:
        tub.setOption("disconnectTimeout", settings.disconnect_timeout)
    port_spec = settings.tub_port
    location = settings.tub_location
    if port_spec is None or port_spec == "":
        port_file = config.path(f"{kind}.port")
        if os.path.exists(port_file):
            with open(port_file, encoding="ascii") as f:
                port_spec = f.read().strip()
        else:
            port_spec = f"tcp:{_free_port()}"
            config.write_file(f"{kind}.port", port_spec + "\n")
    if port_spec.lower() == "disabled":
        if location.lower() not in ("disabled", "auto", ""):
            raise ConfigError(f"{config.config_path}: [node]tub.location is set but tub.port is disabled")
        return tub
    ports = [p.strip() for p in port_spec.split(",") if p.strip()]
    for port in ports:
        _check_port_free(port, config.config_path)
        try:
            if https is None:
                tub.listenOn(port)
            else:
                if reactor is None:
                    from twisted.internet import reactor
                tub.listenOn(SharedPortEndpoint(serverFromString(reactor, port), https, reactor))
        except Exception as e:
            raise ConfigError(f"{config.config_path}: [node]tub.port: cannot listen on {port!r}: {e}") from None
    if location.lower() == "disabled":
        return tub
    if location.upper() == "AUTO" or not location:
        tub.setLocation(f"tcp:127.0.0.1:{_port_number(ports[0], config.config_path)}")
    else:
        tub.setLocation(*[hint.strip() for hint in location.split(",") if hint.strip()])
    return tub


def _port_number(port_spec: str, config_path: str) -> int:
    for part in port_spec.split(":")[1:]:
        if part.isdigit():
            return int(part)
    raise ConfigError(f"{config_path}: [node]tub.port {port_spec!r} has no port number")


def _announcement_sequencer(config: NodeConfig) -> Callable[[], tuple[int, str]]:
    """Numbers this node's announcements, across restarts (``announcement-seqnum``)."""

    def next_seqnum() -> tuple[int, str]:
        path = config.path("announcement-seqnum")
        seqnum = 0
        if os.path.exists(path):
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
            seqnum = int(text) if text.isdigit() else 0
        seqnum += 1
        config.write_file("announcement-seqnum", f"{seqnum}\n")
        return seqnum, _random_b32()

    return next_seqnum


def _add_client(node: Node, config: NodeConfig, identity: NodeIdentity, tub: NodeTub, reactor: Any) -> None:
    """The storage broker, its introducer clients and the node maker."""
    assert identity.secrets is not None  # load_identity makes them for every client node
    # As Tahoe 1.20 chooses: HTTP for servers that announce NURLs, unless [client]force_foolscap.
    connectors: list[Any] = [FoolscapConnector(tub)]
    if not config.client.force_foolscap:
        connectors.insert(0, HTTPConnector(reactor))
    broker = StorageBroker(connectors, preferred_peers=config.client.preferred_peers)
    broker.set_static_servers(config.static_servers())
    broker.setServiceParent(node)
    node.storage_broker = broker
    sequencer = _announcement_sequencer(config)
    for petname, furl in sorted(config.introducer_furls().items()):
        client = IntroducerClient(
            tub,
            furl,
            nickname=config.nickname,
            signing_seed=identity.signing_seed,
            sequencer=sequencer,
            cache_path=config.private_path(f"introducer_{petname}_cache.yaml"),
            petname=petname,
        )
        client.subscribe_to("storage", broker.got_announcement)
        client.setServiceParent(node)
        node.introducer_clients.append(client)
    # RSA-2048 keys take ~0.05 s each (the cryptography package, in a worker thread): one kept ready makes creating a mutable file fast.
    key_pool = KeyPool(reactor, size=1)
    node.key_pool = key_pool
    node.node_maker = NodeMaker(
        servers_for=broker.storage_clients,
        params=config.client.encoding,
        secrets=identity.secrets,
        workers=reactor_workers(reactor),
        codec_factory=isal.codec,
        key_pool=key_pool,
        mutable_format=config.client.mutable_format.upper(),
    )
    if config.client.maintenance is not None:
        node.maintenance = MaintenanceService(
            config.client.maintenance, node.node_maker.node_from_string, config.basedir, clock=reactor
        )
        node.maintenance.setServiceParent(node)


def _add_storage(node: Node, config: NodeConfig, identity: NodeIdentity, nodeid: bytes, reactor: Any) -> None:
    settings = config.storage
    server = StorageServer.on_disk(
        settings.storage_dir,
        nodeid,
        reserved_space=settings.reserved_space,
        readonly=settings.readonly,
        clock=reactor,
        discard_storage=settings.discard_storage,
        expiration=settings.expiration,
    )
    server.setServiceParent(node)
    node.storage_server = server
    node._permutation_seed = permutation_seed_for(config.basedir, identity.pubkey_string)
    node._foolscap_storage = FoolscapStorageServer(server)
    node.storage_swissnum = _storage_swissnum(config)
    if node.https is not None:
        http_storage = HTTPStorageServer(server, node.storage_swissnum.encode("ascii"))
        node.https.serve(http_storage.site(reactor), node.tub.getCertData())


def _storage_status(server: StorageServer, config: NodeConfig) -> Callable[[], StorageStatus]:
    nodeid = base32.b2a(server.nodeid)

    def status() -> StorageStatus:
        return StorageStatus(nickname=config.nickname, nodeid=nodeid, data=server.status_json(), expiration=(
            server.crawler_status()["expiration"]))

    return status


def _storage_swissnum(config: NodeConfig) -> str:
    """The storage server's swissnum: the one in ``private/storage.furl`` if there is one, else a new one.

    Known before the Tub registers the server, since the HTTP server (and its NURLs) use it too.
    """
    furl = config.read_private("storage.furl")
    if furl and "/" in furl.strip().removeprefix("pb://"):
        return furl.strip().rsplit("/", 1)[1]
    return _random_b32(SWISSNUM_BYTES)
