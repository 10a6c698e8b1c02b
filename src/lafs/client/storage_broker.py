"""The storage broker: every storage server this client knows, its connection, and the permuted order."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.application import service
from twisted.logger import Logger

from lafs.core import base32
from lafs.core.errors import Base32Error
from lafs.core.hashes import permute_server_hash
from lafs.storage_client.interface import StorageConnection, StorageConnector, StorageServerClient

log = Logger()
_KEY_BASED_ID = re.compile(r"\Av0-[0-9a-zA-Z]{52}\Z")


def permutation_seed(server_id: str, ann: Mapping[str, Any]) -> bytes:
    """The seed that places a server on the ring (facts brief §9.1)."""
    seed_text = ann.get("permutation-seed-base32")
    if isinstance(seed_text, str):
        try:
            return base32.a2b(seed_text)
        except Base32Error:
            log.warn("server {id} announced a bad permutation seed", id=server_id)
    if _KEY_BASED_ID.match(server_id):
        try:
            return base32.a2b(server_id[3:])
        except Base32Error:
            pass
    return hashlib.sha256(server_id.encode("utf-8")).digest()


class ServerHandle:
    """One storage server: what it announced, and its storage client while we are connected to it."""

    def __init__(self, server_id: str, ann: Mapping[str, Any]) -> None:
        self.server_id = server_id
        self.ann = dict(ann)
        self.client: StorageServerClient | None = None
        self.last_connect_time: float | None = None
        self.last_loss_time: float | None = None
        self.last_received_data: float | None = None
        self._connection: StorageConnection | None = None
        self._status_callbacks: list[Callable[[ServerHandle], None]] = []

    @property
    def furl(self) -> str:
        return str(self.ann.get("anonymous-storage-FURL", ""))

    @property
    def nickname(self) -> str:
        return str(self.ann.get("nickname", ""))

    @property
    def permutation_seed(self) -> bytes:
        return permutation_seed(self.server_id, self.ann)

    def is_connected(self) -> bool:
        return self.client is not None

    def available_space(self) -> int | None:
        return None if self.client is None else self.client.version.available_space

    def application_version(self) -> str | None:
        return None if self.client is None else self.client.version.application_version

    def connection_status(self) -> str:
        if self.client is not None and self._connection is not None:
            return self._connection.describe()
        if self.last_loss_time is not None:
            return "Disconnected; trying to reconnect"
        return "Trying to connect"

    def on_status_change(self, callback: Callable[[ServerHandle], None]) -> None:
        self._status_callbacks.append(callback)

    def _changed(self) -> None:
        for callback in self._status_callbacks:
            callback(self)

    def start_connecting(self, connectors: Sequence[StorageConnector]) -> None:
        for connector in connectors:
            if connector.accepts(self.ann):
                self._connection = connector.connect(self.server_id, self.ann, self._connected, self._lost)
                return
        log.warn("no storage protocol of ours can reach server {id}", id=self.server_id)

    def stop_connecting(self) -> None:
        if self._connection is not None:
            self._connection.stop()
            self._connection = None
        self.client = None

    def _connected(self, client: StorageServerClient) -> None:
        self.client = client
        self.last_connect_time = self.last_received_data = time.time()
        self._changed()

    def _lost(self, client: StorageServerClient) -> None:
        if self.client is client:
            self.client = None
            self.last_loss_time = time.time()
            self._changed()


class StorageBroker(service.MultiService):
    """Keeps a connection to every known storage server and orders them per storage index."""

    def __init__(self, connectors: Sequence[StorageConnector], *, preferred_peers: Sequence[str] = ()) -> None:
        """``connectors``: one per storage protocol, most preferred first; each server uses the first that accepts its announcement."""
        super().__init__()
        self.setName("storage-broker")
        self.connectors = list(connectors)
        self.preferred_peers = frozenset(preferred_peers)
        self._servers: dict[str, ServerHandle] = {}
        self._static_ids: set[str] = set()

    def set_static_servers(self, servers: Mapping[str, Mapping[str, Any]]) -> None:
        for server_id, entry in servers.items():
            self._static_ids.add(server_id)
            self._add(server_id, entry["ann"])

    def got_announcement(self, key_s: str, ann: Mapping[str, Any]) -> None:
        if key_s in self._static_ids:
            return  # servers.yaml wins over the introducer
        if not any(connector.accepts(ann) for connector in self.connectors):
            return
        self._add(key_s, ann)

    def _add(self, server_id: str, ann: Mapping[str, Any]) -> None:
        existing = self._servers.get(server_id)
        if existing is not None:
            if existing.furl == ann.get("anonymous-storage-FURL"):
                existing.ann = dict(ann)
                return
            existing.stop_connecting()
        handle = ServerHandle(server_id, ann)
        if existing is not None:
            # whoever watched the server at its old fURL keeps hearing about it at the new one
            handle._status_callbacks = existing._status_callbacks
        self._servers[server_id] = handle
        if self.running:
            handle.start_connecting(self.connectors)

    def startService(self) -> None:
        super().startService()
        for handle in self._servers.values():
            handle.start_connecting(self.connectors)

    def stopService(self) -> Any:
        for handle in self._servers.values():
            handle.stop_connecting()
        return super().stopService()

    def all_servers(self) -> list[ServerHandle]:
        return sorted(self._servers.values(), key=lambda h: h.server_id)

    def connected_servers(self) -> list[ServerHandle]:
        return [h for h in self.all_servers() if h.is_connected()]

    def get_server(self, server_id: str) -> ServerHandle | None:
        return self._servers.get(server_id)

    def permuted_servers(self, storage_index: bytes, *, connected_only: bool = True) -> list[ServerHandle]:
        candidates = self.connected_servers() if connected_only else self.all_servers()
        return sorted(
            candidates,
            key=lambda h: (h.server_id not in self.preferred_peers, permute_server_hash(storage_index, h.permutation_seed)),
        )

    def storage_clients(self, storage_index: bytes) -> list[StorageServerClient]:
        """The connected servers' clients, in the permuted order for ``storage_index``."""
        return [h.client for h in self.permuted_servers(storage_index) if h.client is not None]

    def connected_clients(self) -> list[StorageServerClient]:
        return [h.client for h in self.connected_servers() if h.client is not None]
