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
    operations: Operations = attrs.field(default=attrs.Factory(lambda self: Operations(self.reactor), takes_self=True))
    """The background deep operations (``/operations/$HANDLE``), in memory as in Tahoe."""
    status: StatusTracker = attrs.field(factory=StatusTracker)
    """The operations the gateway ran, for ``/status`` (in memory, bounded)."""
