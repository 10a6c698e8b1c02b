"""The web gateway service: listens where ``[node]web.port`` says and writes ``node.url``."""

from __future__ import annotations

from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints
from twisted.logger import Logger

from lafs.config import ConfigError
from lafs.web.context import GatewayContext
from lafs.web.request import GatewaySite
from lafs.web.root import RootResource

log = Logger()


class WebGateway(service.MultiService):
    def __init__(self, context: GatewayContext, port_spec: str) -> None:
        super().__init__()
        self.setName("webish")
        self.context = context
        self.port_spec = port_spec
        self.site = GatewaySite(RootResource(context), context)
        self.site.displayTracebacks = False
        self._port: Any = None
        self._listening: list[defer.Deferred[Any]] = []
        self.url: str | None = None

    def startService(self) -> None:
        super().startService()
        try:
            endpoint = endpoints.serverFromString(self.context.reactor, self.port_spec)
        except (ValueError, KeyError) as e:
            raise ConfigError(f"{self.context.config_path}: [node]web.port {self.port_spec!r} is not valid: {e}") from None
        d = endpoint.listen(self.site)
        d.addCallbacks(self._listening_on, self._failed)

    def _listening_on(self, port: Any) -> None:
        self._port = port
        host = port.getHost()
        address = host.host if host.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.url = f"http://{address}:{host.port}/"
        with open(self.context.node_url_path, "w", encoding="ascii") as f:
            f.write(self.url + "\n")
        log.info("web gateway listening at {url}", url=self.url)
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.callback(self.url)

    def _failed(self, failure: Any) -> None:
        log.error("web gateway cannot listen on {spec}: {e}", spec=self.port_spec, e=failure.getErrorMessage())
        waiting, self._listening = self._listening, []
        for d in waiting:
            d.errback(failure)

    def when_listening(self) -> defer.Deferred[Any]:
        if self.url is not None:
            return defer.succeed(self.url)
        d: defer.Deferred[Any] = defer.Deferred()
        self._listening.append(d)
        return d

    def stopService(self) -> Any:
        super().stopService()
        if self._port is not None:
            return self._port.stopListening()
        return None
