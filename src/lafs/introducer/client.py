"""The introducer client: publishes this node's announcements and learns everyone else's."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import yaml
from foolscap.api import Referenceable
from twisted.application import service
from twisted.logger import Logger
from zope.interface import implementer

import lafs
from lafs.interfaces import RIIntroducerSubscriberClient_v2
from lafs.introducer.announcement import (
    BadAnnouncementError,
    replaces,
    sign_announcement,
    verify_announcement,
)
from lafs.introducer.server import INTRODUCER_PROTOCOL_V2
from lafs.tub import winning_hint

log = Logger()

Sequencer = Callable[[], tuple[int, str]]
AnnouncementCallback = Callable[[str, dict[str, Any]], None]


@implementer(RIIntroducerSubscriberClient_v2)
class _SubscriberRemote(Referenceable):
    def __init__(self, client: IntroducerClient) -> None:
        self._client = client

    def remote_announce_v2(self, announcements: Any) -> None:
        for ann_t in announcements:
            self._client.got_announcement(tuple(ann_t))


class _Canary(Referenceable):
    """Lets the introducer notice when we go away."""


class IntroducerClient(service.MultiService):
    """One introducer connection (reconnecting with backoff), its subscriptions and its cache."""

    def __init__(
        self,
        tub: Any,
        introducer_furl: str,
        *,
        nickname: str,
        signing_seed: bytes,
        sequencer: Sequencer,
        cache_path: str,
        petname: str = "default",
    ) -> None:
        super().__init__()
        self.tub = tub
        self.introducer_furl = introducer_furl
        self.nickname = nickname
        self.petname = petname
        self._signing_seed = signing_seed
        self._sequencer = sequencer
        self._cache_path = cache_path
        self._published: dict[str, dict[str, Any]] = {}
        self._subscriptions: dict[str, list[AnnouncementCallback]] = {}
        self._known: dict[tuple[str, str], dict[str, Any]] = {}
        self._remote = _SubscriberRemote(self)
        self._canary = _Canary()
        self._rref: Any = None
        self._reconnector: Any = None
        self.last_connect_time: float | None = None
        self.last_loss_time: float | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._load_cache()
        self._reconnector = self.tub.connectTo(self.introducer_furl, self._connected)

    def stopService(self) -> Any:
        if self._reconnector is not None:
            self._reconnector.stopConnecting()
            self._reconnector = None
        return super().stopService()

    def connected_to_introducer(self) -> bool:
        return self._rref is not None

    def connection_status(self) -> str:
        if self._rref is not None:
            return f"Connected to {winning_hint(self._reconnector, self.introducer_furl)} via tcp"
        if self.last_loss_time is not None:
            return "Disconnected; trying to reconnect"
        return "Trying to connect"

    def _connected(self, rref: Any) -> None:
        d = rref.callRemote("get_version")

        def got_version(version: dict[bytes, Any]) -> None:
            if self._reconnector is None:
                return  # stopped while get_version was on its way
            if INTRODUCER_PROTOCOL_V2 not in version:
                # The fURL carries the introducer's swissnum: the log names the introducer by its petname only.
                log.error("introducer {petname} does not speak the v2 protocol; ignoring it", petname=self.petname)
                return
            self._rref = rref
            self.last_connect_time = time.time()
            rref.notifyOnDisconnect(self._lost)
            for service_name in self._subscriptions:
                self._subscribe(service_name)
            for service_name in self._published:
                self._send_publication(service_name)

        d.addCallback(got_version)
        d.addErrback(lambda f: log.warn("introducer handshake failed: {e}", e=f.getErrorMessage()))

    def _lost(self) -> None:
        self._rref = None
        self.last_loss_time = time.time()

    # --- publishing -----------------------------------------------------------------------

    def publish(self, service_name: str, ann: dict[str, Any]) -> None:
        self._published[service_name] = dict(ann)
        if self._rref is not None:
            self._send_publication(service_name)

    def _send_publication(self, service_name: str) -> None:
        seqnum, nonce = self._sequencer()
        full = {
            "version": 0,
            "nickname": self.nickname,
            "app-versions": [],
            "my-version": lafs.APPLICATION_VERSION,
            "oldest-supported": "1.0.0",
            "service-name": service_name,
            "seqnum": seqnum,
            "nonce": nonce,
            **self._published[service_name],
        }
        ann_t = sign_announcement(full, self._signing_seed)
        d = self._rref.callRemote("publish_v2", ann_t, self._canary)
        d.addErrback(lambda f: log.warn("publishing to the introducer failed: {e}", e=f.getErrorMessage()))

    # --- subscribing ----------------------------------------------------------------------

    def subscribe_to(self, service_name: str, callback: AnnouncementCallback) -> None:
        self._subscriptions.setdefault(service_name, []).append(callback)
        for (svc, key_s), ann in list(self._known.items()):
            if svc == service_name:
                callback(key_s, ann)
        if self._rref is not None:
            self._subscribe(service_name)

    def _subscribe(self, service_name: str) -> None:
        info = {
            b"version": 0,
            b"nickname": self.nickname,
            b"app-versions": [],
            b"my-version": lafs.APPLICATION_VERSION,
            b"oldest-supported": "1.0.0",
        }
        d = self._rref.callRemote("subscribe_v2", self._remote, service_name.encode("utf-8"), info)
        d.addErrback(lambda f: log.warn("subscribing failed: {e}", e=f.getErrorMessage()))

    def got_announcement(self, ann_t: tuple[bytes, bytes, bytes]) -> None:
        try:
            ann, key_s = verify_announcement(ann_t)
        except BadAnnouncementError as e:
            log.warn("ignoring a bad announcement from the introducer: {error}", error=str(e))
            return
        self._accept(ann, key_s, save=True)

    def _accept(self, ann: dict[str, Any], key_s: str, *, save: bool) -> None:
        service_name = ann.get("service-name")
        if not isinstance(service_name, str):
            return
        index = (service_name, key_s)
        old = self._known.get(index)
        if old is not None:
            if old == ann:
                return
            if not replaces(ann, old):
                return
        self._known[index] = ann
        if save:
            self._save_cache()
        for callback in self._subscriptions.get(service_name, []):
            callback(key_s, ann)

    # --- cache ----------------------------------------------------------------------------

    def _save_cache(self) -> None:
        entries = [{"ann": ann, "key_s": key_s} for (_, key_s), ann in self._known.items()]
        tmp = self._cache_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(entries, f)
        os.replace(tmp, self._cache_path)

    def _load_cache(self) -> None:
        try:
            with open(self._cache_path, encoding="utf-8") as f:
                entries = yaml.safe_load(f) or []
        except FileNotFoundError:
            return
        except yaml.YAMLError:
            log.warn("ignoring an unreadable introducer cache {path}", path=self._cache_path)
            return
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("ann"), dict) and isinstance(entry.get("key_s"), str):
                self._accept(entry["ann"], entry["key_s"], save=False)
