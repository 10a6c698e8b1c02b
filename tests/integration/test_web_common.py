"""The gateway's shared parts: the error table, Tahoe's arguments, t= dispatch, censoring, and its pages."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor as global_reactor
from twisted.internet import threads
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.error import UnsupportedMethod

from lafs.client.nodemaker import NotReadableError, UnsupportedOperationError
from lafs.core import caps
from lafs.immutable.download import NotEnoughSharesError
from lafs.immutable.upload import UploadUnhappinessError
from lafs.web import common
from lafs.web.common import Dispatch, WebError
from lafs.web.context import GatewayContext
from lafs.web.request import GatewaySite
from lafs.web.root import RootResource

CAP = "URI:CHK:nbsdnmwg5jtedzgmhpx2rwlcgu:2zkvdqzv5fubosgw4ofafwnlzl5m3ihrgf4dcbzlj3bejv3mwfxa:3:10:200000"


class FakeRequest:
    """Just what the shared code uses of a Twisted request."""

    def __init__(self, method: bytes = b"GET", uri: bytes = b"/", args: dict[bytes, list[bytes]] | None = None) -> None:
        self.method = method
        self.uri = uri
        self.args = args or {}
        self.headers: dict[bytes, bytes] = {}
        self.request_headers: dict[bytes, bytes] = {}
        self.code = 200
        self.written: list[bytes] = []
        self.finished = False
        self._disconnected = False
        self.startedWriting = False

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def getHeader(self, name: bytes) -> bytes | None:
        return self.request_headers.get(name)

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def finish(self) -> None:
        self.finished = True


def request_with(**args: str) -> FakeRequest:
    return FakeRequest(args={k.encode(): [v.encode()] for k, v in args.items()})


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (caps.CapError("bad"), 400),
        (caps.MustBeDeepImmutableError("mutable"), 400),
        (NotReadableError("verify cap"), 400),
        (NotEnoughSharesError("found 0 shares"), 410),
        (UploadUnhappinessError("placed on 1 server"), 503),
        (UnsupportedOperationError("later"), 501),
        (WebError(416, "range"), 416),
        (common.LafsError("unlisted"), 500),
    ],
)
def test_each_error_has_one_status(error: common.LafsError, code: int) -> None:
    assert common.status_of(error) == code


def test_booleans_are_read_as_tahoe_reads_them() -> None:
    for value in ("true", "T", "1", "on", "ON"):
        assert common.boolean_of_arg(value) is True
    for value in ("false", "F", "0", "off"):
        assert common.boolean_of_arg(value) is False
    with pytest.raises(WebError) as caught:
        common.boolean_of_arg("yes", "save")
    assert caught.value.code == 400 and "save=" in str(caught.value) and "'yes'" in str(caught.value)
    assert common.get_boolean_arg(request_with(), "save") is False
    assert common.get_boolean_arg(request_with(save="on"), "save") is True


def test_replace_takes_only_files() -> None:
    assert common.get_replace_arg(request_with()) is True
    assert common.get_replace_arg(request_with(replace="false")) is False
    assert common.get_replace_arg(request_with(replace="Only-Files")) == common.ONLY_FILES
    with pytest.raises(WebError, match="invalid replace= argument: 'sometimes'"):
        common.get_replace_arg(request_with(replace="sometimes"))


def test_format_and_mutable() -> None:
    assert common.get_format(request_with()) == "CHK"
    assert common.get_format(request_with(mutable="true")) == "SDMF"
    assert common.get_format(request_with(format="mdmf", mutable="true")) == "MDMF"
    assert common.get_format(request_with(format="chk", mutable="true")) == "CHK"  # format= wins, as in Tahoe
    with pytest.raises(WebError, match="Unknown format: XYZ"):
        common.get_format(request_with(format="XYZ"))
    with pytest.raises(WebError, match="invalid boolean mutable= argument"):
        common.get_format(request_with(mutable="maybe"))


def test_dispatch_by_method_and_t() -> None:
    calls: list[str] = []
    dispatch = Dispatch("a thing", {(b"GET", ""): lambda r: calls.append("get") or b"got", (b"GET", "json"): lambda r: b"{}"})
    assert dispatch.render(FakeRequest()) == b"got"
    assert dispatch.render(FakeRequest(method=b"HEAD")) == b"got"  # HEAD is GET without the body
    head = FakeRequest(args={b"t": [b" json "]})
    assert dispatch.render(head) == b"{}"
    unknown = FakeRequest(args={b"t": [b"frobnicate"]})
    body = dispatch.render(unknown)
    assert unknown.code == 400 and b"does not support t='frobnicate'" in body and b"t=json" in body
    with pytest.raises(UnsupportedMethod) as caught:
        dispatch.render(FakeRequest(method=b"POST"))
    assert caught.value.allowedMethods == [b"GET", b"HEAD"]


def test_handlers_that_raise_our_errors_answer_by_the_table() -> None:
    def gone(request: Any) -> bytes:
        raise NotReadableError("a verify cap cannot be used to read a file")

    request = FakeRequest()
    body = Dispatch("x", {(b"GET", ""): gone}).render(request)
    assert request.code == 400 and body == b"a verify cap cannot be used to read a file\n"
    assert request.headers[b"content-type"].startswith(b"text/plain")


def test_a_browser_gets_an_error_page() -> None:
    request = FakeRequest()
    request.request_headers[b"accept"] = b"text/html,application/xhtml+xml,*/*;q=0.8"
    body = common.error_body(request, 410, "not enough shares <here>")
    assert request.headers[b"content-type"].startswith(b"text/html")
    assert body.startswith(b"<!DOCTYPE html>") and b"410 Gone" in body and b"not enough shares &lt;here&gt;" in body


@pytest.mark.parametrize(
    ("uri", "logged"),
    [
        (b"/uri/" + CAP.encode(), "/uri/[CENSORED]"),
        (b"/uri/" + CAP.replace(":", "%3A").encode() + b"/sub/name?t=json", "/uri/[CENSORED]?t=json"),
        (b"/cap/x", "/cap/[CENSORED]"),
        (b"/file/x/y", "/file/[CENSORED]"),
        (b"/named/x/y.txt", "/named/[CENSORED]"),
        (b"/uri?uri=" + CAP.encode(), "/uri?uri=[CENSORED]"),
        (b"/uri?t=mkdir&private-key=abc", "/uri?t=mkdir&private-key=[CENSORED]"),
        (b"/uri?t=upload&when_done=/uri/" + CAP.encode(), "/uri?t=upload&when_done=%2Furi%2F[CENSORED]"),
        (b"//uri/" + CAP.encode(), "//uri/[CENSORED]"),
        (b"/?t=json", "/?t=json"),
        (b"/static/lafs.css", "/static/lafs.css"),
    ],
)
def test_the_access_log_censors_caps(uri: bytes, logged: str) -> None:
    assert common.censored_path(uri) == logged


def test_an_access_log_line_has_no_referer() -> None:
    class Request(FakeRequest):
        sentLength = 12

        def getClientAddress(self) -> Any:
            from twisted.internet.address import IPv4Address

            return IPv4Address("TCP", "127.0.0.1", 5555)

    request = Request(uri=b"/uri/" + CAP.encode())
    request.request_headers[b"referer"] = b"http://127.0.0.1:3456/uri/" + CAP.encode()
    assert common.access_log_line(None, request) == "web: 127.0.0.1 GET /uri/[CENSORED] 200 12"


def test_an_unexpected_error_is_logged_without_the_caps_it_names() -> None:
    events: list[LogEvent] = []
    globalLogPublisher.addObserver(events.append)
    try:
        try:
            raise KeyError(f"no such thing as {CAP}")
        except KeyError:
            failure = Failure()
        request = FakeRequest(uri=b"/uri/" + CAP.encode())
        common.fail_request(request, failure)
    finally:
        globalLogPublisher.removeObserver(events.append)
    text = "\n".join(formatEvent(event) for event in events)
    assert "KeyError" in text and "[CENSORED]" in text
    secret_parts = CAP.split(":")[2:4]
    assert not any(part in text for part in secret_parts)
    assert request.code == 500 and b"internal error" in b"".join(request.written)
    assert not any(part.encode() in b"".join(request.written) for part in secret_parts)


def fetch(url: str) -> tuple[int, Any, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


async def get(url: str) -> tuple[int, Any, bytes]:
    # A blocking client in a thread, so the reactor keeps serving meanwhile.
    result: tuple[int, Any, bytes] = await threads.deferToThread(fetch, url)
    return result


@pytest_twisted.ensureDeferred
async def test_the_welcome_page_and_its_style_sheet(tmp_path: Any) -> None:
    context = GatewayContext(
        reactor=global_reactor,
        nickname="<node & co>",
        config_path=str(tmp_path / "tahoe.cfg"),
        node_url_path=str(tmp_path / "node.url"),
        introducer_statuses=lambda: ["Connected to 127.0.0.1:1234"],
    )
    port = global_reactor.listenTCP(0, GatewaySite(RootResource(context), context), interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}/"
    try:
        code, headers, page = await get(base)
        assert code == 200 and headers["content-type"] == "text/html; charset=utf-8"
        assert page.startswith(b"<!DOCTYPE html>") and b"&lt;node &amp; co&gt;" in page
        assert b"Connected to 127.0.0.1:1234" in page and b"Storage servers: 0 of 0 connected" in page
        assert b'href="/static/lafs.css"' in page and b"https://" not in page
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        code, headers, css = await get(base + "static/lafs.css")
        assert code == 200 and headers["content-type"].startswith("text/css") and b"font-family" in css
        assert (await get(base + "static/"))[0] == http.NOT_FOUND  # no listing
        code, _, body = await get(base + "?t=frobnicate")
        assert code == 400 and b"t='frobnicate'" in body
    finally:
        await port.stopListening()
