"""All the web gateway may use of its node: a small typed facade, built by the node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from lafs.client.nodemaker import NodeMaker
from lafs.client.storage_broker import StorageBroker
from lafs.web.operations import Operations
from lafs.web.status import StatusTracker


@attrs.frozen
class StorageStatus:
    """What ``/storage`` shows of the node's storage server, read when the page is asked for."""

    nickname: str
    nodeid: str
    """The Tub ID, base32 (as Tahoe's page shows it)."""
    data: dict[str, Any]
    """Tahoe's ``/storage?t=json`` (``StorageServer.status_json``)."""
    expiration: dict[str, Any] | None
    """The lease checker's configured rule (``LeaseChecker.expiration_summary``); None without crawlers."""


@attrs.frozen
class GatewayContext:
    reactor: Any
    nickname: str
    config_path: str
    """tahoe.cfg, named in configuration errors."""
    node_url_path: str
    """Where the gateway writes its URL once it listens (``BASEDIR/node.url``), for the CLI."""
    introducer_statuses: Callable[[], list[str]]
    """The connection status of each introducer, for the welcome page."""
    node_maker: NodeMaker | None = None
    """None on a node without a client (an introducer)."""
    storage_broker: StorageBroker | None = None
    storage_status: Callable[[], StorageStatus] | None = None
    """None on a node without a storage server (``/storage`` then says so)."""
    maintenance_status: Callable[[], dict[str, Any]] | None = None
    """Automatic maintenance's state and last run (``MaintenanceService.status``); None when it is off."""
    operations: Operations = attrs.field(default=attrs.Factory(lambda self: Operations(self.reactor), takes_self=True))
    """The background deep operations (``/operations/$HANDLE``), in memory as in Tahoe."""
    status: StatusTracker = attrs.field(factory=StatusTracker)
    """The operations the gateway ran, for ``/status`` (in memory, bounded)."""
