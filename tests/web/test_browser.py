"""The web UI in a real browser (headless Chromium through Selenium) against a `tahoe local-grid` subprocess.

What a person does at the gateway's pages: see the grid, make a directory,
upload a 3 MiB file through the form (with its progress bar), open it, make a
subdirectory, rename and unlink children, read "More info", open the read-only
cap and find no way to change anything, and get a readable error page for each
kind of bad input.  An uploaded HTML file must not run script in the
gateway's origin.  Every page is screenshotted into the test's temporary
directory (named in the failure report).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.cli.nodes import local_grid

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[test]')")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SERVERS = 4
CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"), shutil.which("google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver on PATH (Debian: apt-get install chromium chromium-driver; .ci/run does it)",
)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_grid(tmp_path_factory.mktemp("uigrid"), SERVERS) as url:
        yield url


class Browser:
    """A headless Chromium that screenshots each page it is asked to, and remembers every URL it saw."""

    def __init__(self, driver: Any, shots: Path) -> None:
        self.driver = driver
        self.shots = shots
        self.seen: list[str] = []
        self._count = 0

    def get(self, url: str) -> None:
        self.driver.get(url)
        self.seen.append(self.driver.current_url)

    def find(self, css: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait(self, condition: Callable[[], Any], timeout: float = 60) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(lambda _: condition())

    def submit(self, form_css: str) -> None:
        """Click a form's submit button and wait for the page it leads to."""
        old = self.find("html")
        self.find(f"{form_css} button[type=submit]").click()
        self.wait(lambda: _stale(old))
        self.seen.append(self.driver.current_url)

    def shot(self, name: str) -> None:
        self._count += 1
        self.driver.save_screenshot(str(self.shots / f"{self._count:02d}-{name}.png"))


def _stale(element: Any) -> bool:
    try:
        element.tag_name  # noqa: B018 - touching it raises once the page it was on is gone
    except Exception:
        return True
    return False


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    shots = tmp_path_factory.mktemp("screenshots")
    request.session.lafs_screenshot_dir = shots  # type: ignore[attr-defined]
    options = Options()
    options.binary_location = CHROMIUM or ""
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or ""), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield Browser(driver, shots)
    finally:
        driver.quit()


# --- plain HTTP, for what a browser does not show (status codes, headers, bytes) ------------


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, data=data, headers={"Accept": "text/html", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def post_form(url: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]] | None = None) -> tuple[int, Any, bytes]:
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, (filename, data) in (files or {}).items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n\r\n'.encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return fetch(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def children(grid: str, dir_url: str) -> dict[str, Any]:
    status, _, body = fetch(dir_url + "?t=json", headers={"Accept": "*/*"})
    assert status == 200, body
    return json.loads(body)[1]["children"]  # type: ignore[no-any-return]


def cap_of(url: str) -> str:
    return unquote(url.split("/uri/", 1)[1].split("/", 1)[0].split("?", 1)[0])


EVIL_HTML = """<!DOCTYPE html>
<html><head><title>untouched</title></head>
<body><p id="marker">static</p>
<script>
document.title = "SCRIPT RAN";
document.getElementById("marker").textContent = "script ran";
try { document.title = "cookie:" + document.cookie; } catch (e) {}
try { window.parent.document.title = "parent reached"; } catch (e) {}
fetch("/uri/DIRCAP/?t=mkdir&name=pwned-by-fetch", {method: "POST"});
var x = new XMLHttpRequest(); x.open("POST", "/uri/DIRCAP/?t=mkdir&name=pwned-by-xhr"); x.send();
</script></body></html>
"""


# --- the tests ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def state() -> dict[str, Any]:
    """What the steps of the walk-through below pass on to each other (they run in file order)."""
    return {}


def test_welcome_shows_every_storage_server_connected(grid: str, browser: Browser) -> None:
    browser.get(grid)
    browser.shot("welcome")
    assert "Tahoe-LAFS" in browser.driver.title
    rows = browser.all("#servers tr")[1:]
    assert len(rows) == SERVERS
    assert all(row.find_element(By.CSS_SELECTOR, ".connected").text == "connected" for row in rows)
    assert browser.find("h2").text  # the introducers heading
    assert "Connected" in browser.find("#introducers").text
    assert f"Storage servers: {SERVERS} of {SERVERS} connected" in browser.driver.page_source


def test_create_a_directory_and_upload_a_3_mib_file_through_the_form(
    grid: str, browser: Browser, state: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(grid)
    browser.submit("#mkdir-form")
    url = browser.driver.current_url
    assert cap_of(url).startswith("URI:DIR2:"), url
    state["dir"] = url.rstrip("/") + "/"
    browser.shot("new-directory")
    assert browser.find("#access").text == "modifiable"
    assert "empty" in browser.find("#children").text

    data = os.urandom(3 * 1024 * 1024)
    path = tmp_path / "three-mib.bin"
    path.write_bytes(data)
    browser.find("#upload-file").send_keys(str(path))
    # Note (in sessionStorage, which outlives the page) whether a progress bar showed up while sending.
    browser.driver.execute_script(
        "new MutationObserver(function () {"
        " if (document.querySelector('progress.upload-progress')) sessionStorage.setItem('saw-progress', '1');"
        "}).observe(document.body, {subtree: true, childList: true});"
    )
    browser.find("#upload-form button[type=submit]").click()
    # The script shows a progress bar while it sends, then comes back to the directory (when_done=).
    browser.wait(lambda: browser.all("a.child") and "three-mib.bin" in browser.find("#children").text, timeout=180)
    assert browser.driver.execute_script("return sessionStorage.getItem('saw-progress')") == "1"
    browser.seen.append(browser.driver.current_url)
    browser.shot("directory-with-upload")
    row = next(r for r in browser.all("#children tr") if "three-mib.bin" in r.text)
    assert "3,145,728" in row.text
    href = row.find_element(By.CSS_SELECTOR, "a.child").get_attribute("href")
    status, headers, body = fetch(href)
    assert status == 200 and body == data
    assert headers["content-security-policy"] == "sandbox" and headers["x-content-type-options"] == "nosniff"
    state["file_url"] = href


def test_make_a_subdirectory_rename_and_unlink(browser: Browser, state: dict[str, Any], grid: str) -> None:
    here = state["dir"]
    browser.get(here)
    browser.find("#mkdir-name").send_keys("photos")
    browser.submit("#mkdir-form")
    assert browser.driver.current_url == here
    assert "photos" in [a.text for a in browser.all("a.child")]
    browser.shot("subdirectory")
    # Into it and back out by the breadcrumbs.
    next(a for a in browser.all("a.child") if a.text == "photos").click()
    browser.wait(lambda: browser.driver.current_url.endswith("/photos/"))
    browser.shot("inside-subdirectory")
    assert [a.text for a in browser.all(".crumbs a")] == ["Welcome", "root"]
    browser.all(".crumbs a")[-1].click()
    browser.wait(lambda: browser.driver.current_url == here)

    row = next(r for r in browser.all("#children tr") if "photos" in r.text)
    row.find_element(By.CSS_SELECTOR, "a.rename").click()
    browser.wait(lambda: browser.all("#to-name"))
    browser.seen.append(browser.driver.current_url)
    browser.shot("rename-form")
    field = browser.find("#to-name")
    field.clear()
    field.send_keys("pictures")
    browser.submit("#rename-form")
    assert browser.driver.current_url == here
    names = [a.text for a in browser.all("a.child")]
    assert "pictures" in names and "photos" not in names
    assert set(children(grid, here)) == {"three-mib.bin", "pictures"}

    row = next(r for r in browser.all("#children tr") if "pictures" in r.text)
    old = browser.find("html")
    row.find_element(By.CSS_SELECTOR, "button.unlink").click()
    browser.wait(lambda: _stale(old))
    assert "pictures" not in [a.text for a in browser.all("a.child")]
    assert set(children(grid, here)) == {"three-mib.bin"}
    browser.shot("after-unlink")


def test_more_info_and_the_read_only_view(browser: Browser, state: dict[str, Any], grid: str) -> None:
    browser.get(state["dir"])
    browser.find("#dir-info").click()
    browser.wait(lambda: browser.all("#ro-cap"))
    browser.seen.append(browser.driver.current_url)
    browser.shot("more-info")
    assert browser.find("#rw-cap").text == cap_of(state["dir"])
    readonly = browser.find("#ro-cap").text
    assert readonly.startswith("URI:DIR2-RO:")
    assert json.loads(browser.find("#node-json").text)[1]["ro_uri"] == readonly
    state["readonly"] = readonly

    # Paste the read-only cap into the welcome page's "open a cap" form.
    browser.get(grid)
    browser.find("#open-cap").send_keys(readonly)
    browser.submit("#open-form")
    browser.shot("read-only-directory")
    assert cap_of(browser.driver.current_url) == readonly
    assert browser.find("#access").text == "read-only"
    assert "three-mib.bin" in browser.find("#children").text
    for control in ("#upload-form", "#mkdir-form", "#attach-form", "button.unlink", "a.rename", "form[method=post]"):
        assert browser.all(control) == [], control
    # Its info page offers no write cap either.
    browser.find("#dir-info").click()
    browser.wait(lambda: browser.all("#ro-cap"))
    assert browser.all("#rw-cap") == []


def test_an_uploaded_html_file_runs_no_script_in_the_gateway_origin(browser: Browser, state: dict[str, Any], grid: str) -> None:
    here = state["dir"]
    page = EVIL_HTML.replace("DIRCAP", quote(cap_of(here), safe=""))
    status, _, _ = post_form(here, {"t": "upload", "name": "evil.html"}, {"file": ("evil.html", page.encode())})
    assert status == 200
    browser.get(here + "evil.html")
    time.sleep(2)  # time for the script's requests, had it run
    browser.shot("uploaded-html")
    assert browser.driver.title == "untouched"
    assert browser.find("#marker").text == "static"
    assert not any(name.startswith("pwned") for name in children(grid, here))
    status, headers, _ = fetch(here + "evil.html")
    assert headers["content-type"].startswith("text/html")
    assert headers["content-security-policy"] == "sandbox" and headers["x-content-type-options"] == "nosniff"


def test_the_status_page_lists_the_upload(browser: Browser, grid: str) -> None:
    browser.get(grid + "status")
    browser.shot("status")
    assert "3,145,728" in browser.find("#recent").text
    link = next(a for a in browser.all("#recent a") if a.text == "upload")
    link.click()
    browser.wait(lambda: "Upload #" in browser.driver.title)
    browser.seen.append(browser.driver.current_url)
    browser.shot("status-detail")
    assert "done" in browser.find("table").text
    status, _, body = fetch(grid + "status?t=json", headers={"Accept": "*/*"})
    kinds = {op["type"] for op in json.loads(body)["recent"]}
    assert status == 200 and {"upload", "download"} <= kinds


def _error_page(browser: Browser, *, containing: str, back_to: str | None) -> None:
    assert browser.find("h1").text.startswith(("400", "409"))
    assert containing in browser.find("#error-message").text
    assert "Traceback" not in browser.driver.page_source
    if back_to is not None:
        assert browser.find("#back").get_attribute("href") == back_to


def test_bad_form_input_gets_a_readable_error_page(browser: Browser, state: dict[str, Any], grid: str) -> None:
    here = state["dir"]
    cases: list[tuple[str, Callable[[], None], str]] = [
        ("empty-name", lambda: None, "needs a name"),
        ("slash-name", lambda: browser.find("#mkdir-name").send_keys("a/b"), "may not contain a slash"),
    ]
    for shot, fill, message in cases:
        browser.get(here)
        fill()
        browser.submit("#mkdir-form")
        browser.shot(f"error-{shot}")
        _error_page(browser, containing=message, back_to=here)
        browser.find("#back").click()
        browser.wait(lambda: browser.driver.current_url == here)

    browser.find("#attach-name").send_keys("thing")
    browser.find("#attach-uri").send_keys("not a cap at all")
    browser.submit("#attach-form")
    browser.shot("error-malformed-cap")
    _error_page(browser, containing="unknown cap", back_to=here)

    browser.get(here)
    browser.submit("#upload-form")  # no file chosen
    browser.shot("error-no-file")
    _error_page(browser, containing="no file was chosen", back_to=here)

    browser.get(grid)
    browser.find("#open-cap").send_keys("URI:DIR2:garbage")
    browser.submit("#open-form")
    browser.shot("error-open-bad-cap")
    _error_page(browser, containing="Invalid cap", back_to=None)

    # A write through the read-only cap (its page has no forms, so the request is made by hand).
    readonly = "/uri/" + quote(state["readonly"], safe="") + "/"
    browser.get(grid.rstrip("/") + readonly)
    browser.driver.execute_script(
        "var f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        "for (var [k, v] of [['t', 'mkdir'], ['name', 'x'], ['when_done', arguments[0]]]) {"
        " var i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i); }"
        "document.body.appendChild(f); f.submit();",
        readonly,
    )
    browser.wait(lambda: browser.all("#error-message"))
    browser.shot("error-read-only")
    _error_page(browser, containing="read-only", back_to=grid.rstrip("/") + readonly)

    # The status codes are the web API's.
    for fields, code in (
        ({"t": "mkdir", "name": "", "when_done": here}, 400),
        ({"t": "mkdir", "name": "a/b"}, 400),
        ({"t": "uri", "name": "x", "uri": "garbage"}, 400),
        ({"t": "upload"}, 400),
    ):
        status, headers, body = post_form(here, fields)
        assert status == code and headers["content-type"].startswith("text/html"), (fields, status, body)
    status, _, _ = post_form(grid.rstrip("/") + readonly, {"t": "mkdir", "name": "x"})
    assert status == 409


def test_every_page_has_the_security_headers(browser: Browser, state: dict[str, Any], grid: str) -> None:
    pages = set(browser.seen) | {grid, grid + "status", grid + "static/lafs.css", grid + "static/upload.js", state["dir"] + "?t=info"}
    assert len(pages) > 8
    for url in sorted(pages):
        if "evil.html" in url or url == state.get("file_url"):
            continue
        _, headers, _ = fetch(url)
        assert headers["referrer-policy"] == "no-referrer", url
        assert headers["x-frame-options"] == "DENY", url
    for url in (state["file_url"], state["dir"] + "evil.html"):
        _, headers, _ = fetch(url)
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["content-security-policy"] == "sandbox" and headers["x-content-type-options"] == "nosniff"
