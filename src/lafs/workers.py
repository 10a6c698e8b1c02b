"""Where a client's blocking work runs: the reactor, and a thread pool for hashing, AES and coding.

hashlib, the AES and zfec/ISA-L calls release the GIL, so work handed to the
pool overlaps with the reactor moving bytes.  Library code is given a
`Workers` and never reaches for the global reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


@attrs.frozen
class Workers:
    reactor: Any
    pool: ThreadPool

    def run(self, function: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        """Call ``function(*args)`` in the pool; the Deferred fires in the reactor thread."""
        return threads.deferToThreadPool(self.reactor, self.pool, function, *args)


def reactor_workers(reactor: Any) -> Workers:
    """The reactor's own thread pool (started and stopped with the reactor)."""
    return Workers(reactor, reactor.getThreadPool())
