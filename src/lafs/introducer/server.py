"""The introducer: stores signed announcements and forwards them to subscribers."""

from __future__ import annotations

import os
from typing import Any

from foolscap.api import Referenceable
from twisted.application import service
from twisted.logger import Logger
from zope.interface import implementer

import lafs
from lafs.interfaces import RIIntroducerPublisherAndSubscriberService_v2
from lafs.introducer.announcement import BadAnnouncementError, replaces, verify_announcement

INTRODUCER_PROTOCOL_V2 = b"http://allmydata.org/tahoe/protocols/introducer/v2"
FURL_FILE = "introducer.furl"
SWISSNUM_NAME = "introducer"

log = Logger()


def introducer_version() -> dict[bytes, Any]:
    return {INTRODUCER_PROTOCOL_V2: {}, b"application-version": lafs.APPLICATION_VERSION.encode("ascii")}


@implementer(RIIntroducerPublisherAndSubscriberService_v2)
class IntroducerRemote(Referenceable):
    """The introducer as foolscap sees it."""

    def __init__(self) -> None:
        # (service name, announcer key) -> (announcement triple, decoded announcement)
        self.announcements: dict[tuple[str, str], tuple[tuple[bytes, bytes, bytes], dict[str, Any]]] = {}
        self.subscribers: dict[str, dict[Any, dict[bytes, Any]]] = {}

    def remote_get_version(self) -> dict[bytes, Any]:
        return introducer_version()

    def remote_publish_v2(self, ann_t: tuple[bytes, bytes, bytes], canary: Any) -> None:
        self.publish(tuple(ann_t))  # type: ignore[arg-type]

    def publish(self, ann_t: tuple[bytes, bytes, bytes]) -> None:
        try:
            ann, key_s = verify_announcement(ann_t)
        except BadAnnouncementError as e:
            log.warn("ignoring a bad announcement: {error}", error=str(e))
            return
        service_name = ann.get("service-name")
        if not isinstance(service_name, str):
            log.warn("ignoring an announcement without a service-name")
            return
        index = (service_name, key_s)
        old = self.announcements.get(index)
        if old is not None:
            if old[0] == ann_t:
                return
            if not replaces(ann, old[1]):
                log.info("ignoring an announcement whose seqnum is not newer, from {key}", key=key_s)
                return
        self.announcements[index] = (ann_t, ann)
        for subscriber in list(self.subscribers.get(service_name, {})):
            self._send(subscriber, {ann_t})

    def remote_subscribe_v2(self, subscriber: Any, service_name: bytes, subscriber_info: dict[bytes, Any]) -> None:
        name = service_name.decode("utf-8", errors="replace")
        subscribers = self.subscribers.setdefault(name, {})
        if subscriber in subscribers:
            return
        subscribers[subscriber] = subscriber_info
        subscriber.notifyOnDisconnect(lambda: subscribers.pop(subscriber, None))
        current = {ann_t for (svc, _), (ann_t, _) in self.announcements.items() if svc == name}
        self._send(subscriber, current)

    def _send(self, subscriber: Any, announcements: set[tuple[bytes, bytes, bytes]]) -> None:
        d = subscriber.callRemote("announce_v2", announcements)
        d.addErrback(lambda failure: log.info("could not send announcements: {f}", f=failure.getErrorMessage()))




class IntroducerService(service.MultiService):
    """Registers the introducer on the node's Tub and writes ``private/introducer.furl``."""

    def __init__(self, tub: Any, basedir: str) -> None:
        super().__init__()
        self.setName("introducer")
        self.tub = tub
        self.basedir = basedir
        self.remote = IntroducerRemote()
        self.furl: str | None = None

    def startService(self) -> None:
        super().startService()
        private = os.path.join(self.basedir, "private")
        os.makedirs(private, exist_ok=True)
        furl_file = os.path.join(private, FURL_FILE)
        legacy = os.path.join(self.basedir, FURL_FILE)
        if os.path.exists(legacy) and not os.path.exists(furl_file):
            os.rename(legacy, furl_file)
        # foolscap keeps the swissnum in the fURL file, so the fURL survives restarts.
        self.furl = self.tub.registerReference(self.remote, furlFile=furl_file)
