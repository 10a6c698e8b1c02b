"""One node process: its directory, keys, Tub, and the services ``tahoe.cfg`` asks for."""

from __future__ import annotations

import base64
import os
import socket
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from lafs.config import ConfigError, NodeConfig
from lafs.core import base32, crypto
from lafs.tub import NodeTub

log = Logger()

INTRODUCER_TAC = "tahoe-introducer.tac"
CLIENT_TAC = "tahoe-client.tac"


def node_kind(basedir: str) -> str:
    """``"introducer"`` or ``"client"``, from the marker file ``tahoe create-*`` wrote."""
    if os.path.exists(os.path.join(basedir, INTRODUCER_TAC)):
        return "introducer"
    if os.path.exists(os.path.join(basedir, CLIENT_TAC)):
        return "client"
    if os.path.exists(os.path.join(basedir, "tahoe.cfg")):
        return "client"
    raise ConfigError(f"{basedir} is not a node directory (no tahoe.cfg)")


def _random_b32(size: int = 32) -> str:
    return base32.b2a(os.urandom(size))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


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
    """A Tahoe-compatible node: introducer, storage server and/or client with a web gateway."""

    def __init__(self, basedir: str, *, reactor: Any = None) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.reactor = reactor
        self.basedir = os.path.abspath(basedir)
        self.config = NodeConfig.load(self.basedir)
        self.kind = node_kind(self.basedir)
        os.makedirs(self.config.private_path(""), mode=0o700, exist_ok=True)
        os.makedirs(self.config.path("logs"), exist_ok=True)
        self._ensure_secrets()
        self.tub = self._make_tub()
        self.tub.setServiceParent(self)
        self.nodeid = base32.a2b(self.tub.getTubID())
        self.config.write_file("my_nodeid", self.tub.getTubID() + "\n")
        self.storage_server: Any = None
        self.storage_furl: str | None = None
        self.introducer_service: Any = None
        self.introducer_clients: list[Any] = []
        self.storage_broker: Any = None
        self.files: Any = None
        self.web: Any = None
        if self.kind == "introducer":
            self._setup_introducer()
        else:
            self._setup_client()
        web_port = self.config.get("node", "web.port")
        if web_port and web_port.lower() != "none":
            from lafs.web.server import WebGateway

            self.web = WebGateway(self, web_port)
            self.web.setServiceParent(self)

    # --- identity and secrets -------------------------------------------------------------

    def _ensure_secrets(self) -> None:
        config = self.config
        privkey = config.read_private("node.privkey")
        if privkey is None:
            seed = crypto.ed25519_generate()
            config.write_private("node.privkey", crypto.ed25519_private_to_string(seed).decode() + "\n")
        else:
            try:
                seed = crypto.ed25519_private_from_string(privkey)
            except crypto.KeyFormatError as e:
                raise ConfigError(f"{config.private_path('node.privkey')}: {e}") from None
        self.signing_seed = seed
        self.public_key = crypto.ed25519_public_from_private(seed)
        self.pubkey_string = crypto.ed25519_public_to_string(self.public_key)
        if self.kind != "introducer":
            config.write_file("node.pubkey", self.pubkey_string.decode() + "\n")
            if config.read_private("secret") is None:
                config.write_private("secret", _random_b32() + "\n")
            if not os.path.exists(config.private_path("convergence")):
                config.write_private("convergence", _random_b32() + "\n")
            if config.read_private("api_auth_token") is None:
                token = base64.urlsafe_b64encode(os.urandom(32)).decode()
                config.write_private("api_auth_token", token + "\n")

    @property
    def server_id(self) -> str:
        return "v0-" + base32.b2a(self.public_key)

    @property
    def lease_secret(self) -> bytes:
        text = self.config.read_private("secret") or ""
        try:
            return base32.a2b(text)
        except Exception:
            raise ConfigError(f"{self.config.private_path('secret')}: not valid base32") from None

    @property
    def convergence_secret(self) -> bytes:
        text = self.config.read_private("convergence") or ""
        try:
            return base32.a2b(text)
        except Exception:
            raise ConfigError(f"{self.config.private_path('convergence')}: not valid base32") from None

    # --- the Tub ------------------------------------------------------------------------

    def _make_tub(self) -> NodeTub:
        tub = NodeTub(certFile=self.config.private_path("node.pem"))
        tub.setOption("logLocalFailures", True)
        tub.setOption("logRemoteFailures", True)
        keepalive = self.config.get_int("node", "timeout.keepalive", 0)
        if keepalive:
            tub.setOption("keepaliveTimeout", keepalive)
        disconnect = self.config.get_int("node", "timeout.disconnect", 0)
        if disconnect:
            tub.setOption("disconnectTimeout", disconnect)
        port_spec = self.config.get_optional("node", "tub.port")
        location = self.config.get("node", "tub.location", "AUTO")
        if port_spec is None or port_spec == "":
            port_file = self.config.path(f"{self.kind}.port")
            if os.path.exists(port_file):
                with open(port_file, encoding="ascii") as f:
                    port_spec = f.read().strip()
            else:
                port_spec = f"tcp:{_free_port()}"
                self.config.write_file(f"{self.kind}.port", port_spec + "\n")
        if port_spec.lower() == "disabled":
            if location.lower() not in ("disabled", "auto", ""):
                raise ConfigError(f"{self.config.config_path}: [node]tub.location is set but tub.port is disabled")
            return tub
        ports = [p.strip() for p in port_spec.split(",") if p.strip()]
        for port in ports:
            _check_port_free(port, self.config.config_path)
            try:
                tub.listenOn(port)
            except Exception as e:
                raise ConfigError(f"{self.config.config_path}: [node]tub.port: cannot listen on {port!r}: {e}") from None
        if location.lower() == "disabled":
            return tub
        if location.upper() == "AUTO" or not location:
            port_number = self._port_number(ports[0])
            tub.setLocation(f"tcp:127.0.0.1:{port_number}")
            self._auto_location_port = port_number
        else:
            tub.setLocation(*[hint.strip() for hint in location.split(",") if hint.strip()])
        return tub

    def _port_number(self, port_spec: str) -> int:
        parts = port_spec.split(":")
        for part in parts[1:]:
            if part.isdigit():
                return int(part)
        raise ConfigError(f"{self.config.config_path}: [node]tub.port {port_spec!r} has no port number")

    # --- services -------------------------------------------------------------------------

    def _setup_introducer(self) -> None:
        from lafs.introducer.server import IntroducerService

        self.introducer_service = IntroducerService(self.tub, self.basedir)
        self.introducer_service.setServiceParent(self)

    def _sequencer(self) -> tuple[int, str]:
        path = self.config.path("announcement-seqnum")
        seqnum = 0
        if os.path.exists(path):
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
            seqnum = int(text) if text.isdigit() else 0
        seqnum += 1
        self.config.write_file("announcement-seqnum", f"{seqnum}\n")
        return seqnum, _random_b32()

    def _setup_client(self) -> None:
        from lafs.client.storage_broker import StorageBroker
        from lafs.introducer.client import IntroducerClient
        from lafs.storage_client.foolscap import FoolscapConnector

        preferred = [p.strip() for p in self.config.get("client", "peers.preferred").split(",") if p.strip()]
        self.storage_broker = StorageBroker([FoolscapConnector(self.tub)], preferred_peers=preferred)
        self.storage_broker.set_static_servers(self.config.static_servers())
        self.storage_broker.setServiceParent(self)
        for petname, furl in sorted(self.config.introducer_furls().items()):
            client = IntroducerClient(
                self.tub,
                furl,
                nickname=self.config.nickname,
                signing_seed=self.signing_seed,
                sequencer=self._sequencer,
                cache_path=self.config.private_path(f"introducer_{petname}_cache.yaml"),
                petname=petname,
            )
            client.subscribe_to("storage", self.storage_broker.got_announcement)
            client.setServiceParent(self)
            self.introducer_clients.append(client)
        from lafs.client.files import FileService

        self.files = FileService(self)
        if self.config.get_bool("storage", "enabled", True):
            self._setup_storage()

    def _setup_storage(self) -> None:
        from lafs.storage.announcement import permutation_seed_for, storage_announcement
        from lafs.storage.foolscap_server import FoolscapStorageServer
        from lafs.storage.server import StorageServer

        storage_dir = self.config.get("storage", "storage_dir") or self.config.path("storage")
        self.storage_server = StorageServer.on_disk(
            os.path.expanduser(storage_dir),
            self.nodeid,
            reserved_space=self.config.get_size("storage", "reserved_space", 0),
            readonly=self.config.get_bool("storage", "readonly", False),
            clock=self.reactor,
            discard_storage=self.config.get_bool("storage", "debug_discard", False),
        )
        self.storage_server.setServiceParent(self)
        self._permutation_seed = permutation_seed_for(self.basedir, self.pubkey_string)
        self._storage_announcement = storage_announcement
        self._foolscap_storage = FoolscapStorageServer(self.storage_server)

    def startService(self) -> None:
        super().startService()
        if self.storage_server is not None and self.tub.locationHints:
            self.storage_furl = self.tub.registerReference(
                self._foolscap_storage, furlFile=self.config.private_path("storage.furl")
            )
            ann = {"nickname": self.config.nickname, **self._storage_announcement(self.storage_furl, self._permutation_seed)}
            for client in self.introducer_clients:
                client.publish("storage", ann)
        log.info("node started in {basedir}", basedir=self.basedir)

    def when_web_listening(self) -> defer.Deferred[Any]:
        if self.web is None:
            return defer.succeed(None)
        return self.web.when_listening()
