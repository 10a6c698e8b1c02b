"""The node maker: a cap in, the node for it out; and new immutable files uploaded into nodes."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lafs.client.nodes import DataSource, FileSource, Sink
from lafs.core import caps
from lafs.core.check_results import CheckAndRepairResults, CheckResults
from lafs.core.codec import ZfecCodec
from lafs.core.dirnode_format import Child, ChildCaps
from lafs.core.errors import LafsError
from lafs.core.hashes import Sha256dHasher
from lafs.core.params import ClientSecrets, EncodingParameters
from lafs.dirnode.node import (
    DirectoryContext,
    DirectoryNode,
    create_immutable_directory,
    create_mutable_directory,
)
from lafs.immutable.checker import check_immutable, repair_immutable, results_after_repair
from lafs.immutable.download import download_immutable
from lafs.immutable.upload import UploadResult, convergence_hasher_for, upload_immutable
from lafs.mutable.filenode import MutableContext, MutableFileNode
from lafs.mutable.keys import KeyPool
from lafs.storage_client.interface import StorageServerClient
from lafs.workers import Workers

ServersFor = Callable[[bytes], Sequence[StorageServerClient]]
"""The connected servers' clients in the permuted order for a storage index (``StorageBroker.storage_clients``)."""


class UnsupportedOperationError(LafsError):
    """This version of the gateway cannot do that with this kind of node yet."""


class NotReadableError(LafsError):
    """A verify cap names a file without the key to read it."""


class _CapNode:
    """What every node answers from its cap alone."""

    cap: caps.FileCap | caps.DirectoryCap

    def is_mutable(self) -> bool:
        return self.cap.is_mutable()

    def is_readonly(self) -> bool:
        return self.cap.is_readonly()

    def get_uri(self) -> str:
        return self.cap.to_string()

    def get_readonly_uri(self) -> str:
        return self.cap.get_readonly().to_string()

    def get_verify_uri(self) -> str | None:
        verifier = self.cap.get_verify_cap()
        return None if verifier is None else verifier.to_string()

    def get_storage_index(self) -> bytes | None:
        return self.cap.get_storage_index()

    def is_directory(self) -> bool:
        return isinstance(self.cap, caps.DirectoryCap)


class LiteralFileNode(_CapNode):
    """A file small enough to live in its cap (``URI:LIT:``)."""

    def __init__(self, cap: caps.LiteralFileCap) -> None:
        self.cap: caps.LiteralFileCap = cap

    def format_name(self) -> str:
        return "CHK"

    def get_size(self) -> int:
        return len(self.cap.data)

    async def get_current_size(self) -> int:
        return len(self.cap.data)

    async def read(
        self, sink: Sink, offset: int = 0, length: int | None = None, on_start: Callable[[], Any] | None = None
    ) -> None:
        if on_start is not None:
            on_start()
        end = len(self.cap.data) if length is None else offset + length
        data = self.cap.data[offset:end]
        if data:
            sink(data)

    async def check(self, *, verify: bool = False, add_lease: bool = False) -> CheckResults:
        """Always healthy: the data is in the cap, there are no shares to check or lease."""
        return CheckResults.literal()

    async def check_and_repair(self, *, verify: bool = False, add_lease: bool = False) -> CheckAndRepairResults:
        results = CheckResults.literal()
        return CheckAndRepairResults(results, results, repair_attempted=False, repair_successful=False)


class ImmutableFileNode(_CapNode):
    """A CHK file on the grid."""

    def __init__(
        self,
        cap: caps.CHKFileCap,
        servers_for: ServersFor,
        workers: Workers,
        secrets: ClientSecrets | None = None,
        happy: int = 7,
    ) -> None:
        """``secrets`` (the client's lease secret) and ``happy`` are what checking with leases and repairing need."""
        self.cap: caps.CHKFileCap = cap
        self._servers_for = servers_for
        self._workers = workers
        self._secrets = secrets
        self._happy = happy

    def format_name(self) -> str:
        return "CHK"

    def get_size(self) -> int:
        return self.cap.size

    async def get_current_size(self) -> int:
        return self.cap.size

    async def read(
        self, sink: Sink, offset: int = 0, length: int | None = None, on_start: Callable[[], Any] | None = None
    ) -> None:
        await download_immutable(
            self.cap,
            self._servers_for(self.cap.get_storage_index()),
            sink=sink,
            workers=self._workers,
            offset=offset,
            length=length,
            on_start=on_start,
        )

    def _lease_secret(self) -> bytes:
        if self._secrets is None:
            raise UnsupportedOperationError("this node was made without the client's secrets: it cannot add leases or repair")
        return self._secrets.lease_secret

    async def check(self, *, verify: bool = False, add_lease: bool = False) -> CheckResults:
        """Count the shares on the grid (``verify``: and check every block of each); ``add_lease`` renews our leases."""
        servers = self._servers_for(self.cap.get_storage_index())
        lease_secret = self._lease_secret() if add_lease else None
        found = await check_immutable(self.cap, servers, self._workers, verify=verify, add_lease=add_lease, lease_secret=lease_secret)
        return found.results

    async def check_and_repair(self, *, verify: bool = False, add_lease: bool = False) -> CheckAndRepairResults:
        """Check, and if unhealthy, put back the missing (or corrupt) share numbers; good shares are never touched."""
        servers = self._servers_for(self.cap.get_storage_index())
        lease_secret = self._lease_secret()
        found = await check_immutable(self.cap, servers, self._workers, verify=verify, add_lease=add_lease, lease_secret=lease_secret)
        pre = found.results
        if pre.healthy:
            return CheckAndRepairResults(pre, pre, repair_attempted=False, repair_successful=False)
        try:
            written = await repair_immutable(self.cap, servers, self._workers, found, happy=self._happy, lease_secret=lease_secret)
        except LafsError as e:
            # A check after the failed attempt says what is left; the reason goes with it, for a person.
            after = await check_immutable(self.cap, self._servers_for(self.cap.get_storage_index()), self._workers, verify=verify)
            post = after.results
            return CheckAndRepairResults(pre, post, repair_attempted=True, repair_successful=post.healthy, repair_problem=str(e))
        # Every share written and closed, the upload's happiness met: what the servers hold now is known
        # without asking them again (a quarter of a repair's requests).
        post = results_after_repair(self.cap, found, written)
        return CheckAndRepairResults(pre, post, repair_attempted=True, repair_successful=post.healthy)


class UnknownNode:
    """A directory child whose cap is of a kind this version does not know: kept, shown and linked verbatim.

    ``write_uri`` / ``read_uri`` are what a listing shows (the read cap with its
    ``ro.`` or ``imm.`` prefix); they are caps of some future kind, so they go
    through untouched.
    """

    def __init__(self, write_uri: str | None, read_uri: str | None) -> None:
        self.write_uri = write_uri
        self.read_uri = read_uri

    def is_unknown(self) -> bool:
        return True

    def is_directory(self) -> bool:
        return False

    def is_mutable(self) -> bool:
        return self.write_uri is not None

    def is_readonly(self) -> bool:
        return self.write_uri is None

    def get_uri(self) -> str | None:
        return self.write_uri or self.read_uri

    def get_write_uri(self) -> str | None:
        return self.write_uri

    def get_readonly_uri(self) -> str | None:
        return self.read_uri

    def get_verify_uri(self) -> None:
        return None

    def get_storage_index(self) -> None:
        return None

    def get_size(self) -> None:
        return None


class CapOnlyNode(_CapNode):
    """A cap this version can describe but not open: file verify caps."""

    def __init__(self, cap: caps.FileCap | caps.DirectoryCap) -> None:
        self.cap = cap

    def format_name(self) -> str:
        if isinstance(self.cap, caps.MDMFWriteCap | caps.MDMFReadCap):
            return "MDMF"
        if isinstance(self.cap, caps.SSKWriteCap | caps.SSKReadCap):
            return "SDMF"
        return "CHK"

    def get_size(self) -> int | None:
        return None

    def unsupported(self) -> LafsError:
        """Why this node cannot be read."""
        if isinstance(self.cap, caps.CHKFileVerifierCap | caps.MutableVerifierCap):
            return NotReadableError("a verify cap cannot be used to read a file")
        return UnsupportedOperationError(f"{self.cap.kind} caps are not readable through this gateway")


Node = LiteralFileNode | ImmutableFileNode | MutableFileNode | DirectoryNode | CapOnlyNode
ChildNode = Node | UnknownNode
"""What a directory listing holds: any node, or an unknown cap kept verbatim."""
MUTABLE_FORMATS = ("SDMF", "MDMF")


class NodeMaker:
    """Makes nodes from caps, and uploads new files, for the web gateway and the frontends."""

    def __init__(
        self,
        *,
        servers_for: ServersFor,
        params: EncodingParameters,
        secrets: ClientSecrets,
        workers: Workers,
        codec_factory: Callable[[int, int], ZfecCodec] = ZfecCodec,
        key_pool: KeyPool | None = None,
        mutable_format: str = "SDMF",
    ) -> None:
        """``codec_factory(needed, total)`` makes the uploads' erasure codec (``lafs.isal.codec`` where ISA-L loads).

        ``key_pool`` keeps RSA keys ready for new mutable files; ``mutable_format``
        (``[client]mutable.format``) is what a new mutable file is made as when no format is asked for.
        """
        if mutable_format not in MUTABLE_FORMATS:
            raise ValueError(f"mutable_format must be SDMF or MDMF, not {mutable_format!r}")
        self._servers_for = servers_for
        self.params = params
        self._secrets = secrets
        self._workers = workers
        self._codec_factory = codec_factory
        self.mutable_format = mutable_format
        self._mutable = MutableContext(servers_for, secrets, params, workers.reactor, key_pool=key_pool)
        self._directories = DirectoryContext(
            mutable=self._mutable,
            make_node=self.node_for_child,
            upload_immutable=self._upload_bytes,
            download_immutable=self._download_bytes,
            mutable_format=mutable_format,
            file_node=self.node_from_cap,
        )

    def node_from_string(self, cap_text: str) -> Node:
        """The node for a cap string; a malformed cap raises ``caps.CapError``."""
        return self.node_from_cap(caps.from_string_strict(cap_text))

    def node_from_cap(self, cap: caps.FileCap | caps.DirectoryCap) -> Node:
        if isinstance(cap, caps.LiteralFileCap):
            return LiteralFileNode(cap)
        if isinstance(cap, caps.CHKFileCap):
            return ImmutableFileNode(cap, self._servers_for, self._workers, self._secrets, self.params.happy)
        if isinstance(cap, caps.MutableWriteCap | caps.MutableReadCap):
            return self._mutable.node_for_cap(cap)
        if isinstance(cap, caps.DirectoryCap):
            return DirectoryNode(cap, self._directories)
        return CapOnlyNode(cap)

    def node_for_child(self, described: ChildCaps) -> ChildNode:
        """The node for a directory child as ``describe_child`` sees it: known caps opened, unknown ones kept."""
        if described.cap is not None:
            return self.node_from_cap(described.cap)
        return UnknownNode(described.write_uri, described.read_uri)

    async def create_directory(
        self, children: Mapping[str, Child] | None = None, file_format: str | None = None, private_key: bytes | None = None
    ) -> DirectoryNode:
        """A new mutable directory (SDMF or MDMF, by default ``mutable_format``) holding ``children``."""
        chosen = (file_format or self.mutable_format).upper()
        if chosen not in MUTABLE_FORMATS:
            raise UnsupportedOperationError(f"format={chosen} is not a mutable format; a new directory is SDMF or MDMF")
        return await create_mutable_directory(self._directories, children, mutable_format=chosen, private_key=private_key)

    async def create_immutable_directory(self, children: Mapping[str, Child] | None = None) -> DirectoryNode:
        """A new immutable directory (DIR2-CHK, or DIR2-LIT when small); the children must be deep-immutable."""
        return await create_immutable_directory(self._directories, children)

    async def _upload_bytes(self, data: bytes) -> caps.FileCap:
        _, result = await self.upload_immutable(FileSource(io.BytesIO(data)))
        return result.cap

    async def _download_bytes(self, cap: caps.CHKFileCap) -> bytes:
        pieces: list[bytes] = []
        await download_immutable(cap, self._servers_for(cap.get_storage_index()), sink=pieces.append, workers=self._workers)
        return b"".join(pieces)

    async def create_mutable_file(self, source: DataSource, file_format: str | None = None) -> MutableFileNode:
        """Publish a new mutable file holding ``source``: SDMF or MDMF, by default ``mutable_format``."""
        chosen = (file_format or self.mutable_format).upper()
        if chosen not in MUTABLE_FORMATS:
            raise UnsupportedOperationError(f"{chosen} is not a mutable format (use SDMF or MDMF)")
        return await self._mutable.create_mutable_file(source, mdmf=chosen == "MDMF")

    def convergence_hasher(self, size: int) -> Sha256dHasher:
        """A hasher for a ``size``-byte file: its digest is the key ``upload_immutable`` would derive."""
        params = self.params
        return convergence_hasher_for(size, params.needed, params.total, params.max_segment_size, self._secrets.convergence_secret)

    async def upload_immutable(
        self, source: DataSource, *, convergence: bool = True, key_hint: bytes | None = None
    ) -> tuple[LiteralFileNode | ImmutableFileNode, UploadResult]:
        """Upload ``source`` as an immutable file; ``key_hint`` is a ``convergence_hasher`` digest of its bytes, if known."""
        result = await upload_immutable(
            source,
            params=self.params,
            convergence_secret=self._secrets.convergence_secret if convergence else None,
            servers_for=self._servers_for,
            lease_secret=self._secrets.lease_secret,
            workers=self._workers,
            convergent_key_hint=key_hint,
            codec_factory=self._codec_factory,
        )
        node = self.node_from_cap(result.cap)
        assert isinstance(node, LiteralFileNode | ImmutableFileNode)
        return node, result
