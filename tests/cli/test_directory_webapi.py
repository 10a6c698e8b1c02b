"""The directory web API end to end against a `tahoe local-grid` in a subprocess: every endpoint and its errors.

Expected answers (status codes, bodies, messages) are what the real Tahoe 1.20
gives for the same requests, except where noted: Tahoe answers a change
through a read-only or immutable directory, DELETE of a bare dircap and
malformed children JSON with a 500, and links empty names and names with '/'
from children JSON or ``t=uri``; we answer 409 and 400s naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from tests.cli.nodes import local_grid
from tests.cli.test_put_get import http

LIT = "URI:LIT:nbswy3dpeb3w64tmmq"  # "hello world"


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with local_grid(tmp_path_factory.mktemp("dirgrid"), 4) as url:
        yield url


def q(cap: str) -> str:
    return quote(cap, safe="")


def call(method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None) -> tuple[int, str]:
    data = body.encode() if isinstance(body, str) else body
    status, answer, _ = http(method, url, data, headers)
    return status, answer.decode("utf-8", "replace").strip()


def listing(grid: str, cap: str, path: str = "") -> dict[str, Any]:
    status, body = call("GET", f"{grid}uri/{q(cap)}{path}?t=json")
    assert status == 200, body
    kind, info = json.loads(body)
    assert kind == "dirnode"
    return info  # type: ignore[no-any-return]


def mkdir(grid: str, query: str = "", body: str | None = None) -> str:
    status, cap = call("POST", f"{grid}uri?t=mkdir{query}", body)
    assert status == 200, cap
    return cap


def one_file(name: str) -> str:
    """Children JSON with one link to the LIT file."""
    return json.dumps({name: ["filenode", {"ro_uri": LIT}]})


def form(filename: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    body = (
        f'--B\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'.encode() + data + b"\r\n--B--\r\n"
    )
    return body, {"Content-Type": "multipart/form-data; boundary=B"}


def test_unlinked_mkdir_in_every_form(grid: str) -> None:
    assert mkdir(grid).startswith("URI:DIR2:")
    assert mkdir(grid, "&format=mdmf").startswith("URI:DIR2-MDMF:")
    status, cap = call("PUT", grid + "uri?t=mkdir")
    assert status == 200 and cap.startswith("URI:DIR2:")
    status, message = call("POST", grid + "uri?t=mkdir&format=chk")
    assert status == 400 and message == "format=CHK not currently accepted for POST /uri?t=mkdir"
    status, message = call("POST", grid + "uri?t=mkdir&format=bogus")
    assert status == 400 and message == "Unknown format: bogus, I know CHK, SDMF, MDMF"
    status, _, _ = http("POST", grid + "uri?t=mkdir&redirect_to_result=true", b"")
    assert status == 200  # urllib followed the 303 to the new directory's page
    kids = json.dumps({"x": ["filenode", {"ro_uri": LIT, "metadata": {"k": 1}}], "u": ["unknown", {"ro_uri": "foo:bar", "rw_uri": "foo:barw"}]})
    cap = mkdir(grid.rstrip("/") + "/", "-with-children", kids)
    children = listing(grid, cap)["children"]
    # Metadata given at creation is stored as given (no link timestamps), unknown caps verbatim.
    assert children["x"] == ["filenode", {"mutable": False, "format": "CHK", "size": 11, "metadata": {"k": 1}, "ro_uri": LIT}]
    assert children["u"] == ["unknown", {"metadata": {}, "rw_uri": "foo:barw", "ro_uri": "ro.foo:bar"}]
    status, cap = call("POST", grid + "uri?t=mkdir-immutable", one_file("x"))
    # Byte for byte what the real Tahoe made from the same request (convergent, and the same packing).
    assert (status, cap) == (200, "URI:DIR2-LIT:gqzdumj2pawdenr2kvjesosmjfkdu3tcon3xsm3eobswem3xgy2hi3lnoewdaormgi5hw7jmfq")
    info = listing(grid, cap)
    assert info["mutable"] is False and "rw_uri" not in info and "verify_uri" not in info
    assert call("POST", grid + "uri?t=mkdir-immutable", "") == (200, "URI:DIR2-LIT:")
    mutable = mkdir(grid)
    status, message = call("POST", grid + "uri?t=mkdir-immutable", json.dumps({"m": ["dirnode", {"rw_uri": mutable}]}))
    assert status == 400 and message.startswith("MustBeDeepImmutableError:") and "'m'" in message
    for bad in ("not json", "[1, 2]", one_file(""), one_file("a/b")):
        status, message = call("POST", grid + "uri?t=mkdir-with-children", bad)
        assert status == 400, (bad, message)


def test_upload_and_read_through_paths(grid: str) -> None:
    root = mkdir(grid)
    base = f"{grid}uri/{q(root)}"
    status, cap = call("PUT", base + "/a/b/file.txt", "hello world")
    assert (status, cap) == (201, LIT)  # a/ and a/b/ made on the way
    assert call("PUT", base + "/a/b/file.txt", "hello again")[0] == 200
    status, message = call("PUT", base + "/a/b/file.txt?replace=false", "x")
    assert (status, message) == (409, "There was already a child by that name, and you asked me to not replace it.")
    assert call("PUT", base + "/a", "x") == (400, "PUT to a directory")
    status, data, headers = http("GET", base + "/a/b/file.txt")
    assert status == 200 and data == b"hello again" and headers["Content-Type"] == "text/plain"
    kind, info = json.loads(call("GET", base + "/a/b/file.txt?t=json")[1])
    assert kind == "filenode" and info["size"] == 11 and set(info["metadata"]["tahoe"]) == {"linkcrtime", "linkmotime"}
    assert call("GET", base + "/a/nope/deeper") == (404, "No such child: nope")
    assert call("GET", base + "/a/b/file.txt/x") == (400, "Files have no children named 'x'")
    # Mutable files at a path: made with format=, changed in place by a later PUT (the cap stays).
    status, mdmf = call("PUT", base + "/mut?format=MDMF", "v1")
    assert status == 201 and mdmf.startswith("URI:MDMF:")
    assert call("PUT", base + "/mut", "v2") == (200, mdmf)
    assert http("GET", base + "/mut")[1] == b"v2"
    child = listing(grid, root)["children"]["mut"]
    assert child[0] == "filenode" and child[1]["format"] == "MDMF" and child[1]["rw_uri"] == mdmf
    status, page, headers = http("GET", base + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b">mut</a>" in page
    assert call("GET", base + "?t=uri") == (200, root)
    assert call("GET", base + "?t=readonly-uri")[1].startswith("URI:DIR2-RO:")
    assert b"Directory info" in http("GET", base + "?t=info")[1]


def test_form_uploads_into_a_directory(grid: str) -> None:
    root = mkdir(grid)
    base = f"{grid}uri/{q(root)}"
    body, headers = form("up.txt", b"uploaded")
    assert call("POST", base + "?t=upload", body, headers) == (200, "URI:LIT:ovygy33bmrswi")
    assert call("POST", base + "?t=upload&name=other.txt", body, headers)[0] == 200
    assert call("POST", base + "?t=upload&replace=false", body, headers)[0] == 409
    status, mutable = call("POST", base + "?t=upload&mutable=true&name=m.txt", body, headers)
    assert status == 200 and mutable.startswith("URI:SSK:")
    # Uploading onto a writable mutable file replaces its contents and keeps its cap, as in Tahoe.
    assert call("POST", base + "?t=upload&name=m.txt", *form("m.txt", b"new contents")) == (200, mutable)
    assert http("GET", base + "/m.txt")[1] == b"new contents"
    assert sorted(listing(grid, root)["children"]) == ["m.txt", "other.txt", "up.txt"]


def test_linking_unlinking_and_renaming(grid: str) -> None:
    root = mkdir(grid)
    base = f"{grid}uri/{q(root)}"
    assert call("POST", base + f"?t=uri&name=lit&uri={LIT}") == (200, LIT)
    assert call("POST", base + f"?t=uri&name=lit&uri={LIT}&replace=false")[0] == 409
    assert call("POST", base + f"?t=uri&uri={LIT}") == (400, "set-uri requires a name")
    assert call("POST", base + f"?t=uri&name=a/b&uri={LIT}")[0] == 400
    status, message = call("POST", base + "?t=uri&name=bad&uri=whatever:thing")
    assert status == 400 and message.startswith("MustNotBeUnknownRWError")
    assert call("PUT", base + "/lit2?t=uri", LIT) == (200, LIT)
    assert call("PUT", base + "/lit2?t=uri&replace=false", LIT)[0] == 409
    assert call("PUT", base + "/lit2?t=uri&replace=only-files", LIT) == (200, LIT)
    assert call("POST", base + "?t=mkdir&name=sub")[1].startswith("URI:DIR2:")
    assert call("POST", base + "?t=mkdir&name=sub&replace=false")[0] == 409
    assert call("PUT", base + "/sub?t=uri&replace=only-files", LIT)[0] == 409
    assert call("DELETE", base + "/lit2") == (200, LIT)
    assert call("DELETE", base + "/lit2") == (404, "No such child: lit2")
    assert call("DELETE", base)[0] == 400
    assert call("POST", base + "?t=delete&name=lit") == (200, "thing unlinked")
    assert call("POST", base + "?t=unlink&name=lit") == (404, "No such child: lit")
    assert call("POST", base + f"?t=uri&name=f&uri={LIT}")[0] == 200
    assert call("POST", base + "?t=rename&from_name=f&to_name=g") == (200, "thing moved")
    assert call("POST", base + "?t=rename&from_name=nosuch&to_name=h") == (404, "No such child: nosuch")
    assert call("POST", base + "?t=rename&from_name=g") == (400, "to_name= is required for rename")
    assert call("POST", base + "?t=rename&to_name=g") == (400, "from_name= is required")
    assert call("POST", base + "?t=rename&from_name=g&to_name=a/b") == (400, "to_name= may not contain a slash")
    assert call("POST", base + "?t=rename&from_name=g&to_name=sub&replace=only-files")[0] == 409
    # relink: to_dir is a dircap, optionally with a path below it.
    assert call("POST", base + f"?t=relink&from_name=g&to_dir={root}/sub&to_name=g2") == (200, "thing moved")
    assert sorted(listing(grid, root, "/sub")["children"]) == ["g2"]
    assert call("POST", base + f"?t=relink&from_name=sub&to_dir={root}/nosuchdir") == (404, "No such child: nosuchdir")
    assert call("POST", base + f"?t=relink&from_name=sub&to_dir={LIT}") == (400, "to_dir is not a directory")
    kids = json.dumps({"s1": ["filenode", {"ro_uri": LIT, "metadata": {"m": 2}}], "s2": ["filenode", {"ro_uri": LIT}]})
    assert call("POST", base + "?t=set_children", kids) == (200, "Okay so I did it.")
    assert call("POST", base + "?t=set-children&replace=false", kids)[0] == 409
    s1 = listing(grid, root)["children"]["s1"][1]["metadata"]
    assert s1["m"] == 2 and "linkcrtime" in s1["tahoe"]
    # when_done= redirects (urllib follows it to the page it names).
    status, _, _ = http("POST", base + "?t=mkdir&name=wd&when_done=" + q("/uri/" + q(root) + "/"), b"")
    assert status == 200 and "wd" in listing(grid, root)["children"]


def test_mkdir_at_paths(grid: str) -> None:
    root = mkdir(grid)
    base = f"{grid}uri/{q(root)}"
    status, made = call("POST", base + "/x/y?t=mkdir")
    assert status == 200 and made.startswith("URI:DIR2:")
    assert call("PUT", base + "/x/y?t=mkdir") == (200, made)  # there already: unchanged
    assert call("PUT", base + "/x/y/z?t=mkdir&format=mdmf")[1].startswith("URI:DIR2-MDMF:")
    assert call("POST", base + "?t=mkdir") == (200, root)
    kids = one_file("f")
    assert call("POST", base + "/x?t=mkdir-with-children&name=kids", kids)[1].startswith("URI:DIR2:")
    assert call("POST", base + "/x?t=mkdir-immutable&name=imm", kids)[1].startswith("URI:DIR2-LIT:")
    assert call("POST", base + "/x/newimm?t=mkdir-immutable", kids)[1].startswith("URI:DIR2-LIT:")
    assert sorted(listing(grid, root, "/x")["children"]) == ["imm", "kids", "newimm", "y"]
    assert sorted(listing(grid, root, "/x/kids")["children"]) == ["f"]


def test_read_only_and_immutable_directories_refuse_changes(grid: str) -> None:
    root = mkdir(grid)
    base = f"{grid}uri/{q(root)}"
    call("PUT", base + "/a/file", "data")
    ro = call("GET", base + "?t=readonly-uri")[1]
    rbase = f"{grid}uri/{q(ro)}"
    for method, url in (("PUT", rbase + "/new"), ("DELETE", rbase + "/a"), ("POST", rbase + "?t=mkdir&name=z"), ("PUT", rbase + "/a/new")):
        status, message = call(method, url, "x")
        assert status == 409 and "read-only" in message, (method, url)
    child = listing(grid, ro, "/a")
    assert "rw_uri" not in child and child["ro_uri"].startswith("URI:DIR2-RO:")
    assert all("rw_uri" not in c[1] for c in listing(grid, ro)["children"].values())
    imm = call("POST", grid + "uri?t=mkdir-immutable", one_file("x"))[1]
    status, message = call("POST", f"{grid}uri/{q(imm)}?t=unlink&name=x")
    assert status == 409 and "immutable" in message
