"""Deep operations end to end on a `tahoe local-grid`: t=stream-*, t=start-* with /operations/, and
`tahoe deep-check`, `tahoe manifest`, `tahoe stats` (outputs as the real Tahoe 1.20 prints them)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cli.nodes import tahoe
from tests.cli.test_directory_webapi import LIT, call, grid, mkdir, q  # noqa: F401  (grid is a fixture)


@pytest.fixture(scope="module")
def tree(grid: str) -> Iterator[tuple[str, str]]:  # noqa: F811
    root = mkdir(grid)
    sub = mkdir(grid)
    status, big = call("PUT", f"{grid}uri", b"x" * 5000)
    assert status == 200
    for parent, name, cap in ((root, "big", big), (root, "small", LIT), (root, "sub", sub), (sub, "loop", sub), (root, "shared", sub)):
        status, body = call("PUT", f"{grid}uri/{q(parent)}/{name}?t=uri", cap)
        assert status in (200, 201), body
    yield grid, root


def lines(body: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.splitlines()]


def test_stream_manifest_and_deep_check(tree: tuple[str, str]) -> None:
    url, root = tree
    status, body = call("POST", f"{url}uri/{q(root)}?t=stream-manifest")
    assert status == 200, body
    found = lines(body)
    assert [d.get("path") for d in found[:-1]] == [[], ["big"], ["small"], ["shared"]]
    assert list(found[0]) == ["path", "cap", "type", "verifycap", "repaircap", "storage-index"]
    assert found[2]["verifycap"] == "" and found[2]["storage-index"] == ""
    assert found[-1]["type"] == "stats" and found[-1]["stats"]["count-directories"] == 2
    status, body = call("POST", f"{url}uri/{q(root)}?t=stream-deep-check&repair=true")
    assert status == 200, body
    checked = lines(body)
    assert checked[0]["check-and-repair-results"]["repair-attempted"] is False
    assert checked[2]["check-results"] == {"storage-index": "", "results": {"healthy": True}}


def test_check_of_a_directory(tree: tuple[str, str]) -> None:
    url, root = tree
    status, body = call("POST", f"{url}uri/{q(root)}?t=check&output=JSON")
    assert status == 200, body
    assert json.loads(body)["results"]["healthy"] is True


def wait_finished(url: str, handle: str) -> dict[str, Any]:
    for _ in range(100):
        status, body = call("GET", f"{url}operations/{handle}?output=JSON")
        assert status == 200, body
        data: dict[str, Any] = json.loads(body)
        if data["finished"]:
            return data
        time.sleep(0.1)
    raise AssertionError("the operation did not finish")


def test_start_operations_and_their_status(tree: tuple[str, str]) -> None:
    url, root = tree
    status, body = call("POST", f"{url}uri/{q(root)}?t=start-deep-stats")
    assert (status, body) == (400, "slow operation requires ophandle=")
    for t, handle in (("start-deep-check", "c1"), ("start-manifest", "m1"), ("start-deep-size", "z1"), ("start-deep-stats", "s1")):
        status, body = call("POST", f"{url}uri/{q(root)}?t={t}&ophandle={handle}&output=JSON")
        assert status == 200, body
        assert json.loads(body)["finished"] in (False, True)
    check = wait_finished(url, "c1")
    assert check["count-objects-checked"] == 3 and check["count-objects-healthy"] == 3
    assert check["stats"]["count-files"] == 2
    manifest = wait_finished(url, "m1")
    assert [path for path, _ in manifest["manifest"]] == [[], ["big"], ["small"], ["shared"]]
    size = wait_finished(url, "z1")
    assert size["size"]["size-immutable-files"] == 5000  # Tahoe 1.20 puts the stats under "size"
    status, text = call("GET", f"{url}operations/z1?t=status")
    assert text.startswith("finished: yes\nsize: ")
    stats = wait_finished(url, "s1")
    assert stats["api-version"] == 1 and stats["count-immutable-files"] == 1
    status, body = call("GET", f"{url}operations/m1")
    assert status == 200 and "Manifest of SI=" in body
    # release-after-complete: the handle goes once a finished status was fetched.
    status, _ = call("GET", f"{url}operations/s1?output=JSON&release-after-complete=true")
    assert status == 200
    assert call("GET", f"{url}operations/s1?output=JSON") == (404, "unknown/expired handle 's1'")
    status, _ = call("POST", f"{url}operations/c1?t=cancel&output=JSON")
    assert status == 200
    assert call("GET", f"{url}operations/c1")[0] == 404


def test_cli_deep_check_manifest_stats(tree: tuple[str, str]) -> None:
    url, root = tree
    out = tahoe("deep-check", "-u", url, root).stdout
    assert out == "done: 4 objects checked, 4 healthy, 0 unhealthy\n"
    out = tahoe("deep-check", "-v", "-u", url, root).stdout
    assert out.splitlines()[:4] == ["'<root>': Healthy", "'big': Healthy", "'small': Healthy (LIT)", "'shared': Healthy"]
    out = tahoe("deep-check", "--repair", "-u", url, root).stdout
    assert out == (
        "done: 4 objects checked\n pre-repair: 4 healthy, 0 unhealthy\n"
        " 0 repairs attempted, 0 successful, 0 failed\n post-repair: 4 healthy, 0 unhealthy\n"
    )
    out = tahoe("manifest", "-u", url, root).stdout.splitlines()
    assert out[0] == f"{root} " and out[2] == f"{LIT} small"
    assert len(tahoe("manifest", "--storage-index", "-u", url, root).stdout.splitlines()) == 3
    out = tahoe("stats", "-u", url, root).stdout
    assert "  size-immutable-files: 5000    (5.00 kB, 4.88 kiB)\n" in out
    assert out.startswith("Counts and Total Sizes:\n count-immutable-files: 1\n")
    assert "Size Histogram:\n   11-31    : 1    (31 B, 31 B)\n    ...\n 3163-10000 : 1    (10.00 kB, 9.77 kiB)\n" in out
    raw = json.loads(tahoe("stats", "--raw", "-u", url, root).stdout)
    assert raw["finished"] is True
