"""What a storage client can ask of one storage server, whatever the wire protocol.

Every method is a coroutine.  A server that cannot be reached, or that fails
a request, raises a `ServerError` subclass; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from lafs.core.errors import LafsError

STORAGE_V1 = b"http://allmydata.org/tahoe/protocols/storage/v1"
UNKNOWN_MAXIMUM_SIZE = 2**64
"""What a server that does not say how much it takes is assumed to take (as Tahoe assumes)."""

TestVector = Sequence[tuple[int, int, bytes, bytes]]
"""(offset, length, operator, specimen); the operator is always b"eq"."""
DataVector = Sequence[tuple[int, bytes]]
ReadVector = Sequence[tuple[int, int]]
TestAndWriteVectors = Mapping[int, tuple[TestVector, DataVector, int | None]]
"""Per share number: (test vector, writes, new length or None)."""


class ServerError(LafsError):
    """A storage server failed a request or went away."""

    def __init__(self, server_id: str, message: str) -> None:
        super().__init__(f"server {server_id}: {message}")
        self.server_id = server_id


class ServerUnreachableError(ServerError):
    """The server is not connected, or the connection was lost during the call."""


class ServerRefusedError(ServerError):
    """The server answered the call with an error; ``remote_type`` names its kind (e.g. ``DataTooLargeError``)."""

    def __init__(self, server_id: str, message: str, remote_type: str = "") -> None:
        super().__init__(server_id, message)
        self.remote_type = remote_type


class WriteEnablerMismatchError(ServerRefusedError):
    """A mutable write whose write enabler the server's share was not created with."""


@attrs.frozen
class ServerVersion:
    """The parts of a server's ``get_version`` answer a client acts on."""

    maximum_immutable_share_size: int = UNKNOWN_MAXIMUM_SIZE
    maximum_mutable_share_size: int = UNKNOWN_MAXIMUM_SIZE
    available_space: int | None = None
    application_version: str | None = None

    @classmethod
    def from_dict(cls, version: Mapping[bytes, Any]) -> ServerVersion:
        v1 = version.get(STORAGE_V1, {})
        if not isinstance(v1, Mapping):
            v1 = {}

        def number(key: bytes, default: int | None) -> Any:
            value = v1.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else default

        application = version.get(b"application-version")
        return cls(
            maximum_immutable_share_size=number(b"maximum-immutable-share-size", UNKNOWN_MAXIMUM_SIZE),
            maximum_mutable_share_size=number(b"maximum-mutable-share-size", UNKNOWN_MAXIMUM_SIZE),
            available_space=number(b"available-space", None),
            application_version=application.decode("utf-8", "replace") if isinstance(application, bytes) else None,
        )


@attrs.frozen
class Allocation:
    """The answer to `StorageServerClient.allocate_buckets`."""

    already_have: frozenset[int]
    """Every finished share of the storage index the server holds (not only the ones asked for)."""
    writers: Mapping[int, BucketWriterClient]
    """Writers for the requested shares the server lacks and has room for."""


@attrs.frozen
class ReadTestWriteResult:
    """The answer to `StorageServerClient.slot_testv_and_readv_and_writev`."""

    success: bool
    """Whether every test vector matched (and so every write was applied)."""
    reads: Mapping[int, Sequence[bytes]]
    """The read vector's data from every share that existed before the writes."""


class BucketWriterClient(Protocol):
    """One immutable share being uploaded to one server."""

    async def write(self, offset: int, data: bytes) -> None: ...

    async def close(self) -> None: ...

    async def abort(self) -> None: ...


class BucketReaderClient(Protocol):
    """One finished immutable share on one server."""

    async def read(self, offset: int, length: int) -> bytes: ...

    async def advise_corrupt_share(self, reason: bytes) -> None: ...


class StorageServerClient(Protocol):
    """One storage server, as the client side sees it."""

    @property
    def server_id(self) -> str: ...

    @property
    def lease_seed(self) -> bytes:
        """The server's binary tubid: Tahoe mixes it into each server's lease secrets and write enablers."""

    @property
    def version(self) -> ServerVersion: ...

    async def allocate_buckets(
        self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes, sharenums: Iterable[int], allocated_size: int
    ) -> Allocation: ...

    async def get_buckets(self, storage_index: bytes) -> Mapping[int, BucketReaderClient]: ...

    async def add_lease(self, storage_index: bytes, renew_secret: bytes, cancel_secret: bytes) -> None:
        """Add a lease to every share of the storage index, or renew the one with this renew secret."""

    async def slot_readv(self, storage_index: bytes, shares: Sequence[int], readv: ReadVector) -> Mapping[int, Sequence[bytes]]:
        """Read from mutable shares; an empty ``shares`` means every share the server holds."""

    async def slot_testv_and_readv_and_writev(
        self,
        storage_index: bytes,
        secrets: tuple[bytes, bytes, bytes],
        tw_vectors: TestAndWriteVectors,
        read_vector: ReadVector,
    ) -> ReadTestWriteResult:
        """``secrets`` = (write enabler, renew secret, cancel secret)."""

    async def advise_corrupt_share(self, share_type: bytes, storage_index: bytes, shnum: int, reason: bytes) -> None: ...


class StorageConnection(Protocol):
    """A connection a connector keeps up to one server; ``stop`` ends it for good."""

    def stop(self) -> None: ...

    def describe(self) -> str:
        """How we are connected, for status pages (e.g. ``"Connected to 127.0.0.1:1234 via tcp"``)."""


ConnectedCallback = Callable[[StorageServerClient], None]
LostCallback = Callable[[StorageServerClient], None]


class StorageConnector(Protocol):
    """Makes storage clients for servers announced in one protocol (Foolscap, HTTP)."""

    def accepts(self, announcement: Mapping[str, Any]) -> bool:
        """Whether this connector can reach a server that announced ``announcement``."""

    def connect(
        self,
        server_id: str,
        announcement: Mapping[str, Any],
        connected: ConnectedCallback,
        lost: LostCallback,
    ) -> StorageConnection:
        """Keep connecting to the server; call ``connected`` with a client each time a connection is made, ``lost`` when it ends."""
