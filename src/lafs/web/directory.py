"""Directories through the gateway: ``/uri/$DIRCAP[/PATH]`` and the unlinked ``/uri?t=mkdir...``.

A request for ``/uri/$DIRCAP/a/b`` walks the path from the directory.  When a
name is missing, a PUT or POST that makes things (anything but unlink,
rename, relink and check) creates the missing intermediate directories, and
the last name is a *placeholder* the operation fills (upload, link, mkdir).
What the walk ends on answers the request: a directory (`DirectoryHandler`'s
table), a file (the file handler, plus the operations that need its parent),
an unknown node, or the placeholder.  Answers, status codes and messages are
Tahoe 1.20's.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urljoin

import attrs
from twisted.web import http
from twisted.web.server import NOT_DONE_YET
from twisted.web.template import Element, renderer, tags

from lafs.client.nodemaker import ChildNode, MutableFileNode, NodeMaker, UnknownNode
from lafs.core import base32, caps
from lafs.core.dirnode_format import (
    Child,
    ExistingChildError,
    NoSuchChildError,
    make_child,
    normalize_name,
)
from lafs.core.errors import LafsError
from lafs.dirnode import DirectoryNode
from lafs.web.check import render_check
from lafs.web.common import (
    ONLY_FILES,
    Dispatch,
    FileFormat,
    HandlerResult,
    Rendered,
    WebError,
    answer,
    get_arg,
    get_format,
    get_replace_arg,
    get_t,
    is_mutable_format,
    run_async,
    when_done_url,
)
from lafs.web.filenode import FileHandler
from lafs.web.html import send_page, template, wants_html
from lafs.web.info import NodeViews, cap_body, json_body, node_json, not_modified
from lafs.web.operations import start_operation, stream_operation
from lafs.web.request import HashingBody
from lafs.web.unlinked import form_file, publish_new, publish_over, spooled_source, upload_new

# Requests that never create what is missing on their path (Tahoe's rule for intermediate directories).
_NO_CREATE_TS = (
    "delete", "unlink", "rename", "relink", "rename-form", "check",
    "stream-deep-check", "stream-manifest", "start-deep-check", "start-manifest", "start-deep-size", "start-deep-stats",
)


# --- JSON ---------------------------------------------------------------------------------


def child_json(node: ChildNode, metadata: dict[str, Any]) -> list[Any]:
    """A child as a directory listing shows it (Tahoe's key order; no ``format`` for directories)."""
    info: dict[str, Any] = {}
    if isinstance(node, UnknownNode):
        info["metadata"] = metadata
        if node.get_write_uri():
            info["rw_uri"] = node.get_write_uri()
        if node.get_readonly_uri():
            info["ro_uri"] = node.get_readonly_uri()
        return ["unknown", info]
    info["mutable"] = node.is_mutable()
    if not node.is_directory():
        info["format"] = node.format_name()
        size = node.get_size()
        if size is not None:
            info["size"] = size
    info["metadata"] = metadata
    if not node.is_readonly():
        info["rw_uri"] = node.get_uri()
    info["ro_uri"] = node.get_readonly_uri()
    verifier = node.get_verify_uri()
    if verifier is not None:
        info["verify_uri"] = verifier
    return ["dirnode" if node.is_directory() else "filenode", info]


async def directory_json(node: DirectoryNode) -> list[Any]:
    """``GET /uri/$DIRCAP?t=json``: the children, then the directory's own caps."""
    children = {name: child_json(child, metadata) for name, (child, metadata) in sorted((await node.list()).items())}
    info: dict[str, Any] = {"children": children, "ro_uri": node.get_readonly_uri()}
    if not node.is_readonly():
        info["rw_uri"] = node.get_uri()
    verifier = node.get_verify_uri()
    if verifier is not None:
        info["verify_uri"] = verifier
    info["mutable"] = node.is_mutable()
    return ["dirnode", info]


def children_from_json(body: bytes, *, deep_immutable: bool = False) -> dict[str, Child]:
    """The children of ``mkdir-with-children`` / ``mkdir-immutable`` / ``set_children``:
    ``{NAME: [TYPE, {"ro_uri": .., "rw_uri": .., "metadata": {..}}]}``; TYPE is ignored, as in Tahoe.

    Tahoe answers malformed JSON with a 500 and links names holding '/' or empty
    ones; here both are refused with a 400 naming the problem.
    """
    if not body.strip():
        return {}
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise WebError(http.BAD_REQUEST, f"the children JSON could not be parsed: {e}") from None
    if not isinstance(data, dict):
        raise WebError(http.BAD_REQUEST, "the children JSON must be an object mapping names to [type, properties]")
    children: dict[str, Child] = {}
    for name, value in data.items():
        if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict)):
            raise WebError(http.BAD_REQUEST, f"child {name!r} in the children JSON is not [type, properties]")
        properties = value[1]
        metadata = properties.get("metadata", {})
        if not isinstance(metadata, dict):
            raise WebError(http.BAD_REQUEST, f"the metadata of child {name!r} must be a JSON object")
        write, read = properties.get("rw_uri"), properties.get("ro_uri")
        if not all(cap is None or isinstance(cap, str) for cap in (write, read)):
            raise WebError(http.BAD_REQUEST, f"the caps of child {name!r} must be strings")
        child = make_child(name, write, read, metadata, deep_immutable=deep_immutable)
        children[child.name] = child
    return children


def _link_caps(name: str, cap: str) -> tuple[str | None, str | None]:
    """The (write, read) slots for a cap given alone (``t=uri``): a known cap fills both; an
    unknown one only when marked read-only, since its read cap cannot be derived (as Tahoe refuses it)."""
    try:
        caps.from_string_strict(cap)
    except caps.MustBeDeepImmutableError:
        raise
    except caps.CapError:
        if cap.startswith((caps.ALLEGED_READONLY_PREFIX, caps.ALLEGED_IMMUTABLE_PREFIX)):
            return None, cap
        raise WebError(
            http.BAD_REQUEST,
            f"MustNotBeUnknownRWError: an operation to add a child named {name!r} to a directory"
            " was given an unknown cap in a write slot.",
        ) from None
    return cap, cap


def _entries(children: dict[str, Child]) -> dict[str, tuple[str | None, str | None, dict[str, Any] | None]]:
    return {name: (child.rw_uri, child.ro_uri, child.metadata) for name, child in children.items()}


# --- answers ------------------------------------------------------------------------------


def _text(request: Any, text: str, code: int = http.OK) -> None:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.write(text.encode("utf-8"))
    request.finish()


def _done(request: Any, text: str, cap: str = "", code: int = http.OK) -> None:
    """Finish an operation: to ``when_done=`` if given (``%(uri)s`` becomes ``cap``), else with ``text``."""
    when_done = get_arg(request, "when_done")
    if when_done:
        request.redirect(urljoin(request.prePathURL().decode("utf-8"), when_done_url(when_done, cap or text)).encode("utf-8"))
        request.finish()
        return
    _text(request, text, code)


def _name_arg(request: Any, arg: str, operation: str) -> str:
    name = get_arg(request, arg).strip()
    if not name:
        raise WebError(http.BAD_REQUEST, f"{operation} requires a {arg}= argument")
    if "/" in name:
        raise WebError(http.BAD_REQUEST, f"{arg}= may not contain a slash")
    return normalize_name(name)


def _mkdir_format(request: Any, node_maker: NodeMaker, what: str) -> str:
    chosen = get_format(request, default=node_maker.mutable_format)  # type: ignore[arg-type]
    if not is_mutable_format(chosen):
        raise WebError(http.BAD_REQUEST, f"format={chosen} not currently accepted for {what}")
    return chosen


def _private_key(request: Any) -> bytes | None:
    text = get_arg(request, "private-key")
    if not text:
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise WebError(http.BAD_REQUEST, "private-key= must be an RSA private key, DER in URL-safe base64") from None


async def _new_directory(request: Any, node_maker: NodeMaker, t: str, what: str) -> DirectoryNode:
    """The directory a mkdir request asks for: empty, with the body's children, or immutable."""
    if t == "mkdir-immutable":
        return await node_maker.create_immutable_directory(children_from_json(request.content.read(), deep_immutable=True))
    children = children_from_json(request.content.read()) if t == "mkdir-with-children" else None
    file_format = _mkdir_format(request, node_maker, what)
    private_key = _private_key(request)
    try:
        return await node_maker.create_directory(children, file_format, private_key=private_key)
    except (ValueError, LafsError) as e:
        if private_key is None:
            raise
        raise WebError(http.BAD_REQUEST, f"private-key= is not a usable RSA private key: {e}") from None


def _upload_format(request: Any, node_maker: NodeMaker) -> FileFormat:
    return get_format(request, mutable_default=node_maker.mutable_format)  # type: ignore[arg-type]


async def _upload(request: Any, node_maker: NodeMaker, body: Any) -> Any:
    """A new file from ``body``: mutable when format=/mutable= ask for it, else immutable (convergent)."""
    chosen = _upload_format(request, node_maker)
    source = spooled_source(body)
    if is_mutable_format(chosen):
        return await publish_new(request, node_maker, source, chosen)
    key_hint = body.convergent_key() if isinstance(body, HashingBody) else None
    node, _ = await upload_new(request, node_maker, source, key_hint)
    return node


# --- unlinked directories -----------------------------------------------------------------


class UnlinkedDirectories:
    """``PUT``/``POST /uri?t=mkdir``, ``POST /uri?t=mkdir-with-children`` and ``?t=mkdir-immutable``."""

    def __init__(self, node_maker: NodeMaker) -> None:
        self.node_maker = node_maker

    def routes(self) -> dict[tuple[bytes, str], Callable[..., HandlerResult]]:
        return {
            (b"PUT", "mkdir"): self.mkdir,
            (b"POST", "mkdir"): self.mkdir,
            (b"POST", "mkdir-with-children"): self.mkdir,
            (b"POST", "mkdir-immutable"): self.mkdir,
        }

    async def mkdir(self, request: Any) -> None:
        t = get_t(request)
        node = await _new_directory(request, self.node_maker, t, f"{request.method.decode()} /uri?t={t}")
        cap = node.get_uri()
        if get_arg(request, "redirect_to_result").lower() in ("true", "t", "1", "on"):
            request.setResponseCode(http.SEE_OTHER)
            request.setHeader(b"location", urljoin(request.prePathURL().decode("utf-8"), "/uri/" + quote(cap, safe="")).encode())
            request.finish()
            return
        _done(request, cap)


# --- the walk -----------------------------------------------------------------------------


class DirectoryResource:
    """Answers ``/uri/$DIRCAP[/PATH]``: walks PATH, then hands the request to what it found."""

    def __init__(self, root: DirectoryNode, node_maker: NodeMaker) -> None:
        self.root = root
        self.node_maker = node_maker

    def render(self, request: Any) -> Rendered:
        segments = [segment.decode("utf-8", "replace") for segment in (request.postpath or [])]
        path = [normalize_name(segment) for segment in segments if segment]
        if not path:
            return DirectoryHandler(self.root, self.node_maker, None, None).render(request)
        return run_async(request, self._walk_and_answer(request, path))

    def _creates(self, request: Any) -> bool:
        return request.method in (b"PUT", b"POST") and get_t(request) not in _NO_CREATE_TS

    async def _walk_and_answer(self, request: Any, path: list[str]) -> None:
        parent: DirectoryNode = self.root
        for index, name in enumerate(path):
            try:
                node, metadata = await parent.get_child_and_metadata(name)
            except NoSuchChildError:
                if not self._creates(request):
                    raise
                # Missing from here down: make the directories in between, the last name is what the request makes.
                for missing in path[index:-1]:
                    parent = await parent.create_subdirectory(missing)
                await Placeholder(parent, path[-1], self.node_maker).answer(request)
                return
            last = index == len(path) - 1
            if last:
                break
            if not isinstance(node, DirectoryNode):
                if isinstance(node, UnknownNode):
                    raise WebError(http.BAD_REQUEST, f"{name!r} is of an unknown kind; it has no children")
                raise WebError(http.BAD_REQUEST, f"Files have no children named {path[index + 1]!r}")
            parent = node
        await self._answer(request, parent, path[-1], node, metadata)

    async def _answer(self, request: Any, parent: DirectoryNode, name: str, node: Any, metadata: dict[str, Any]) -> None:
        if isinstance(node, DirectoryNode):
            handler: Any = DirectoryHandler(node, self.node_maker, parent, name)
        elif isinstance(node, UnknownNode):
            handler = UnknownChildHandler(node, parent, name, metadata)
        else:
            handler = ChildFileHandler(node, self.node_maker, parent, name, metadata)
        result = handler.render(request)
        if result is not NOT_DONE_YET:
            # A handler that answered at once (an error, a cap) returned the body instead of writing it.
            if isinstance(result, bytes) and not request.finished:
                request.write(result)
                request.finish()


class Placeholder:
    """A missing last name on the path of a request that makes something there."""

    def __init__(self, parent: DirectoryNode, name: str, node_maker: NodeMaker) -> None:
        self.parent = parent
        self.name = name
        self.node_maker = node_maker

    async def answer(self, request: Any) -> None:
        t = get_t(request)
        replace = get_replace_arg(request)
        if request.method == b"PUT" and t == "":
            node = await _upload(request, self.node_maker, request.content)
            await self.parent.set_node(self.name, node, overwrite=replace)
            _text(request, node.get_uri(), http.CREATED)
        elif request.method == b"PUT" and t == "uri":
            cap = request.content.read().decode("utf-8", "replace").strip()
            await self.parent.set_uri(self.name, *_link_caps(self.name, cap), overwrite=replace)
            _text(request, cap)
        elif t in ("mkdir", "mkdir-with-children", "mkdir-immutable"):
            new = await _new_directory(request, self.node_maker, t, f"{request.method.decode()} ?t={t}")
            await self.parent.set_node(self.name, new, overwrite=replace)
            _done(request, new.get_uri())
        else:
            raise NoSuchChildError(self.name, f"No such child: {self.name}")


# --- a directory --------------------------------------------------------------------------


class DirectoryHandler(NodeViews):
    """Answers the requests for one directory node; ``parent``/``name`` when it was reached by a path."""

    def __init__(self, node: DirectoryNode, node_maker: NodeMaker, parent: DirectoryNode | None = None, name: str | None = None) -> None:
        self.node = node
        self.node_maker = node_maker
        self.parent = parent
        self.name = name
        self.operations = Dispatch(
            "a directory",
            {
                (b"GET", ""): self._listing,
                (b"GET", "json"): self._json,
                (b"GET", "info"): self._info,
                (b"GET", "rename-form"): self._rename_form,
                (b"GET", "uri"): self._uri,
                (b"GET", "readonly-uri"): self._readonly_uri,
                (b"PUT", ""): self._put_onto,
                (b"PUT", "mkdir"): self._own_cap,
                (b"PUT", "uri"): self._replace_link,
                (b"DELETE", ""): self._unlink_me,
                (b"POST", "mkdir"): self._mkdir_child,
                (b"POST", "mkdir-with-children"): self._mkdir_child,
                (b"POST", "mkdir-immutable"): self._mkdir_child,
                (b"POST", "upload"): self._upload_child,
                (b"POST", "uri"): self._link_child,
                (b"POST", "delete"): self._unlink_child,
                (b"POST", "unlink"): self._unlink_child,
                (b"POST", "rename"): self._rename,
                (b"POST", "relink"): self._relink,
                (b"POST", "set_children"): self._set_children,
                (b"POST", "set-children"): self._set_children,
                (b"POST", "check"): self._check,
                (b"POST", "stream-deep-check"): self._stream,
                (b"POST", "stream-manifest"): self._stream,
                (b"POST", "start-deep-check"): self._start,
                (b"POST", "start-manifest"): self._start,
                (b"POST", "start-deep-size"): self._start,
                (b"POST", "start-deep-stats"): self._start,
            },
        )

    def render(self, request: Any) -> Rendered:
        if request.method in (b"GET", b"HEAD") and self._not_modified(request):
            request.finish()
            return NOT_DONE_YET
        return self.operations.render(request)

    def _not_modified(self, request: Any) -> bool:
        # Tahoe's ETag for a fixed view of an immutable directory.
        t = get_t(request)
        si = self.node.get_storage_index()
        if self.node.is_mutable() or not si or t not in ("", "json", "uri", "readonly-uri"):
            return False
        return bool(request.setETag(f"DIR:{base32.b2a(si)}-{t}".encode()) == http.CACHED)

    # --- checking and deep operations ---

    def _check(self, request: Any) -> HandlerResult:
        return render_check(request, self.node)

    def _stream(self, request: Any) -> HandlerResult:
        return stream_operation(request, self.node, get_t(request))

    def _start(self, request: Any) -> bytes:
        return start_operation(request, self.node, request.site.context.operations, get_t(request))

    # --- reading ---

    async def _listing(self, request: Any) -> None:
        children = await self.node.list()
        await send_page(request, DirectoryPage(self.node, children, PageURLs.of(request)))

    def _rename_form(self, request: Any) -> HandlerResult:
        if self.node.is_readonly():
            raise WebError(http.CONFLICT, "this directory is read-only: nothing in it can be renamed through this cap")
        name = _name_arg(request, "name", "t=rename-form")
        return send_page(request, RenameForm(name, PageURLs.of(request)))

    async def _json(self, request: Any) -> None:
        request.write(json_body(request, await directory_json(self.node)))
        request.finish()

    # --- this directory as a child of its parent ---

    def _put_onto(self, request: Any) -> bytes:
        raise WebError(http.BAD_REQUEST, "PUT to a directory")

    def _own_cap(self, request: Any) -> bytes:
        # PUT ?t=mkdir on an existing directory: it is there already; nothing changes.
        return cap_body(request, self.node.get_uri())

    def _need_parent(self, what: str) -> tuple[DirectoryNode, str]:
        if self.parent is None or self.name is None:
            raise WebError(http.BAD_REQUEST, f"{what} needs a path below a directory cap: there is no parent to change here")
        return self.parent, self.name

    async def _replace_link(self, request: Any) -> None:
        parent, name = self._need_parent("PUT ?t=uri")
        replace = get_replace_arg(request)
        if replace is not True:
            # The name is taken, by a directory: neither replace=false nor only-files allows replacing it.
            raise ExistingChildError(name, f"a directory named {name!r} already exists")
        cap = request.content.read().decode("utf-8", "replace").strip()
        await parent.set_uri(name, *_link_caps(name, cap), overwrite=replace)
        _text(request, cap)

    async def _unlink_me(self, request: Any) -> None:
        parent, name = self._need_parent("DELETE")
        removed = await parent.delete(name)
        _text(request, removed.get_uri() or "")

    # --- changing this directory ---

    async def _mkdir_child(self, request: Any) -> None:
        t = get_t(request)
        name = get_arg(request, "name").strip()
        if not name and b"name" in request.args and wants_html(request):
            # A browser's form sent an empty name: the person forgot to type one (the API's bare
            # t=mkdir, which names this directory itself, sends no name= at all).
            raise WebError(http.BAD_REQUEST, "a new directory needs a name")
        if not name:
            # The path named this directory, made on the way here if it was missing: the job is done.
            _done(request, self.node.get_uri())
            return
        name = _name_arg(request, "name", f"t={t}")
        replace = get_replace_arg(request)
        new = await _new_directory(request, self.node_maker, t, f"POST ?t={t}")
        await self.node.set_node(name, new, overwrite=replace)
        _done(request, new.get_uri())

    async def _upload_child(self, request: Any) -> None:
        body = form_file(request)
        name = get_arg(request, "name").strip() or getattr(request, "form_filenames", {}).get("file", "")
        if not name:
            raise WebError(http.BAD_REQUEST, "upload requires a name= argument or a file name in the form")
        name = _name_arg_value(name)
        replace = get_replace_arg(request)
        children = await self.node.list()
        existing = children.get(name)
        if existing is not None:
            if replace is False or (replace == ONLY_FILES and existing[0].is_directory()):
                raise ExistingChildError(name, f"a child named {name!r} already exists")
            old = existing[0]
            if isinstance(old, MutableFileNode) and not old.is_readonly():
                # As Tahoe does: uploading onto a writable mutable file replaces its contents in place.
                await publish_over(request, old, spooled_source(body))
                _done(request, old.get_uri())
                return
        node = await _upload(request, self.node_maker, body)
        await self.node.set_node(name, node, overwrite=replace)
        _done(request, node.get_uri())

    async def _link_child(self, request: Any) -> None:
        name = get_arg(request, "name").strip()
        if not name:
            raise WebError(http.BAD_REQUEST, "set-uri requires a name")
        name = _name_arg_value(name)
        cap = get_arg(request, "uri").strip()
        if not cap:
            raise WebError(http.BAD_REQUEST, "set-uri requires a uri= argument")
        await self.node.set_uri(name, *_link_caps(name, cap), overwrite=get_replace_arg(request))
        _done(request, cap)

    async def _unlink_child(self, request: Any) -> None:
        name = get_arg(request, "name").strip()
        if not name:
            raise WebError(http.BAD_REQUEST, f"t={get_t(request)} requires a name= argument")
        await self.node.delete(name)
        _done(request, "thing unlinked")

    async def _rename(self, request: Any) -> None:
        if get_arg(request, "to_dir", "\0") != "\0":
            raise WebError(http.BAD_REQUEST, "to_dir= is not valid for rename")
        if get_arg(request, "to_name", "\0") == "\0":
            raise WebError(http.BAD_REQUEST, "to_name= is required for rename")
        await self._relink(request)

    async def _relink(self, request: Any) -> None:
        if get_arg(request, "from_name", "\0") == "\0":
            raise WebError(http.BAD_REQUEST, "from_name= is required")
        from_name = get_arg(request, "from_name").strip()
        to_name = get_arg(request, "to_name", "\0").strip()
        if to_name == "\0":
            to_name = from_name
        for arg, value in (("from_name", from_name), ("to_name", to_name)):
            if "/" in value:
                raise WebError(http.BAD_REQUEST, f"{arg}= may not contain a slash")
            if not value:
                raise WebError(http.BAD_REQUEST, f"{arg}= may not be empty")
        replace = get_replace_arg(request)
        to_dir = get_arg(request, "to_dir").strip()
        new_parent: Any = self.node
        if to_dir and to_dir != self.node.get_uri():
            cap_text, _, rest = to_dir.partition("/")
            try:
                target_root = self.node_maker.node_from_string(cap_text)
            except caps.CapError:
                raise WebError(http.BAD_REQUEST, "to_dir is not a directory") from None
            if not isinstance(target_root, DirectoryNode):
                raise WebError(http.BAD_REQUEST, "to_dir is not a directory")
            new_parent = await target_root.get_child_at_path([normalize_name(n) for n in rest.split("/") if n])
            if not isinstance(new_parent, DirectoryNode):
                raise WebError(http.BAD_REQUEST, "to_dir is not a directory")
        await self.node.move_child_to(from_name, new_parent, to_name, overwrite=replace)
        _done(request, "thing moved")

    async def _set_children(self, request: Any) -> None:
        children = children_from_json(request.content.read())
        await self.node.set_children(_entries(children), overwrite=get_replace_arg(request))
        _done(request, "Okay so I did it.")


def _name_arg_value(name: str) -> str:
    if "/" in name:
        raise WebError(http.BAD_REQUEST, f"a child name may not contain a slash: {name!r}")
    return normalize_name(name)


# --- a file or unknown node reached through a directory -----------------------------------


class ChildFileHandler:
    """A file at ``/uri/$DIRCAP/.../NAME``: the file handler's operations, plus those that change its link."""

    def __init__(self, node: Any, node_maker: NodeMaker, parent: DirectoryNode, name: str, metadata: dict[str, Any]) -> None:
        self.node = node
        self.node_maker = node_maker
        self.parent = parent
        self.name = name
        self.metadata = metadata
        # named=True: the content type of the bytes follows the child's name, as in Tahoe.
        self.file = FileHandler(node, named=True)

    def render(self, request: Any) -> Rendered:
        return answer(request, lambda: self._route(request))

    def _route(self, request: Any) -> HandlerResult:
        t = get_t(request)
        method = request.method
        if method == b"DELETE" and t == "":
            return self._unlink(request)
        if method == b"PUT" and t in ("", "uri"):
            return self._put(request, t)
        if method in (b"GET", b"HEAD") and t == "json":
            return self._json(request)
        if method in (b"GET", b"HEAD") and not_modified(request, self.node, t):
            request.finish()
            return NOT_DONE_YET
        if method not in (b"GET", b"HEAD"):
            return FileHandler(self.node).operations.handler_for(request)(request)
        return self.file.operations.handler_for(request)(request)

    async def _json(self, request: Any) -> None:
        description = node_json(self.node)
        if isinstance(self.node, MutableFileNode):
            description[1]["size"] = await self.node.get_current_size()
        description[1]["metadata"] = self.metadata
        request.write(json_body(request, description))
        request.finish()

    async def _unlink(self, request: Any) -> None:
        removed = await self.parent.delete(self.name)
        _text(request, removed.get_uri() or "")

    async def _put(self, request: Any, t: str) -> None:
        replace = get_replace_arg(request)
        if replace is False:
            # The early trap: the name is taken, so do not even upload.
            raise ExistingChildError(self.name, f"a child named {self.name!r} already exists")
        if t == "uri":
            cap = request.content.read().decode("utf-8", "replace").strip()
            await self.parent.set_uri(self.name, *_link_caps(self.name, cap), overwrite=replace)
            _text(request, cap)
            return
        node = self.node
        if isinstance(node, MutableFileNode):
            # A mutable file is changed in place (whole, or at offset= for MDMF), keeping its cap.
            if node.is_readonly():
                raise WebError(http.BAD_REQUEST, "PUT to a mutable file: replace or update requested with read-only cap")
            await FileHandler(node)._replace(request)  # type: ignore[misc]
            return
        if get_arg(request, "offset"):
            raise WebError(http.BAD_REQUEST, "PUT to a file: append operation invoked on an immutable cap")
        new = await _upload(request, self.node_maker, request.content)
        await self.parent.set_node(self.name, new, overwrite=replace)
        _text(request, new.get_uri())


class UnknownChildHandler:
    """A child of a kind this version does not know: its JSON and caps, and unlinking or replacing it."""

    def __init__(self, node: UnknownNode, parent: DirectoryNode, name: str, metadata: dict[str, Any]) -> None:
        self.node = node
        self.parent = parent
        self.name = name
        self.metadata = metadata
        self.operations = Dispatch(
            "an unknown node",
            {
                (b"GET", "json"): self._json,
                (b"GET", "uri"): self._uri,
                (b"GET", "readonly-uri"): self._readonly_uri,
                (b"DELETE", ""): self._unlink,
                (b"PUT", "uri"): self._replace,
            },
        )

    def render(self, request: Any) -> Rendered:
        return self.operations.render(request)

    def _json(self, request: Any) -> bytes:
        return json_body(request, child_json(self.node, self.metadata))

    def _uri(self, request: Any) -> bytes:
        return cap_body(request, self.node.get_uri() or "")

    def _readonly_uri(self, request: Any) -> bytes:
        return cap_body(request, self.node.get_readonly_uri() or "")

    async def _unlink(self, request: Any) -> None:
        await self.parent.delete(self.name)
        _text(request, self.node.get_uri() or "")

    async def _replace(self, request: Any) -> None:
        replace = get_replace_arg(request)
        if replace is False:
            raise ExistingChildError(self.name, f"a child named {self.name!r} already exists")
        cap = request.content.read().decode("utf-8", "replace").strip()
        await self.parent.set_uri(self.name, *_link_caps(self.name, cap), overwrite=replace)
        _text(request, cap)


# --- the HTML listing ---------------------------------------------------------------------


def _kind_of(node: Any) -> str:
    if isinstance(node, UnknownNode):
        return "?"
    if node.is_directory():
        return "DIR" if node.is_mutable() else "DIR-IMM"
    return "FILE" if not node.is_mutable() else "MUT-FILE"


def _link_time(metadata: dict[str, Any], key: str) -> str:
    """A link timestamp from Tahoe's metadata (``tahoe.linkcrtime`` / ``linkmotime``), in UTC; "" when absent."""
    tahoe = metadata.get("tahoe")
    when = tahoe.get(key) if isinstance(tahoe, dict) else None
    if not isinstance(when, int | float):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when))


def _format_choice(name: str, options: tuple[tuple[str, str], ...]) -> Any:
    return tags.select(*[tags.option(label, value=value) for value, label in options], name=name)


_FILE_FORMATS = (("CHK", "Immutable"), ("SDMF", "Mutable (SDMF)"), ("MDMF", "Mutable (MDMF)"))
_DIR_FORMATS = (("SDMF", "SDMF"), ("MDMF", "MDMF"))


@attrs.frozen
class PageURLs:
    """Where a directory page is: its own URL and those of the directories above it, for breadcrumbs and forms."""

    here: str
    """This directory's page (absolute path, ending in '/'); forms post to it and come back to it."""
    crumbs: tuple[tuple[str, str], ...]
    """(label, URL) from the root cap down to the parent of this directory."""
    name: str

    @classmethod
    def of(cls, request: Any) -> PageURLs:
        # prepath is /uri/$CAP, postpath the path below it (Twisted has unescaped both): escape them again.
        root = "/" + "/".join(quote(segment, safe="") for segment in request.prepath) + "/"
        names = [segment.decode("utf-8", "replace") for segment in request.postpath or [] if segment]
        crumbs = [("root", root)]
        url = root
        for name in names:
            url += quote(name.encode("utf-8"), safe="") + "/"
            crumbs.append((name, url))
        label, here = crumbs.pop()
        return cls(here, tuple(crumbs), label)


class DirectoryPage(Element):
    """``GET /uri/$DIRCAP/``: breadcrumbs, the children with their kinds, sizes and link times, and (when the
    cap can write) the forms that change the directory; every form comes back here with ``when_done=``."""

    loader = template("directory.xml")

    def __init__(self, node: DirectoryNode, children: dict[str, tuple[Any, dict[str, Any]]], urls: PageURLs) -> None:
        super().__init__()
        self._node = node
        self._children = children
        self._urls = urls
        self._writable = not node.is_readonly()

    @renderer
    def title(self, request: Any, tag: Any) -> Any:
        si = self._node.get_storage_index()
        short = base32.b2a(si)[:5] if si else "LIT"
        access = "read-only" if self._node.is_readonly() else "modifiable"
        return tag(f"Directory SI={short} ({access})")

    @renderer
    def heading(self, request: Any, tag: Any) -> Any:
        access = "modifiable" if self._writable else "read-only"
        return tag(self._urls.name + "/", " ", tags.span(access, class_=f"badge {access}", id="access"))

    @renderer
    def crumbs(self, request: Any, tag: Any) -> Any:
        parts: list[Any] = [tags.a("Welcome", href="/")]
        for label, url in self._urls.crumbs:
            parts += [" / ", tags.a(label, href=url)]
        parts += [" / ", tags.span(self._urls.name)]
        return tag(*parts)

    @renderer
    def links(self, request: Any, tag: Any) -> Any:
        here = self._urls.here
        items: list[Any] = [tags.a("More info", href=here + "?t=info", id="dir-info"), " · ", tags.a("JSON", href=here + "?t=json")]
        if self._writable:
            ro = "/uri/" + quote(self._node.get_readonly_uri(), safe="") + "/"
            items += [" · ", tags.a("Read-only view", href=ro)]
        return tag(*items)

    @renderer
    def action_header(self, request: Any, tag: Any) -> Any:
        return tag("Actions") if self._writable else tag("More")

    @renderer
    def rows(self, request: Any, tag: Any) -> Any:
        if not self._children:
            return tags.tr(tags.td("This directory is empty.", colspan="6", class_="empty"))
        rows = []
        for name, (node, metadata) in sorted(self._children.items()):
            href = self._urls.here + quote(name.encode("utf-8"), safe="")
            is_dir = isinstance(node, DirectoryNode)
            if is_dir:
                href += "/"
            size = None if isinstance(node, UnknownNode) else node.get_size()
            link = tags.span(name) if isinstance(node, UnknownNode) else tags.a(name, href=href, class_="child")
            rows.append(
                tag.clone().fillSlots(
                    kind=tags.span(_kind_of(node), class_="kind"),
                    name=link,
                    size="" if size is None or is_dir else f"{size:,}",
                    created=_link_time(metadata, "linkcrtime"),
                    modified=_link_time(metadata, "linkmotime"),
                    actions=self._actions(name, href, node),
                )
            )
        return rows

    def _actions(self, name: str, href: str, node: Any) -> Any:
        here = self._urls.here
        actions: list[Any] = []
        if not isinstance(node, UnknownNode):
            actions.append(tags.a("More info", href=href + "?t=info", class_="info"))
        if self._writable:
            rename = here + "?" + urlencode({"t": "rename-form", "name": name})
            actions += [
                tags.a("Rename", href=rename, class_="rename"),
                tags.form(
                    tags.input(type="hidden", name="t", value="unlink"),
                    tags.input(type="hidden", name="name", value=name),
                    tags.input(type="hidden", name="when_done", value=here),
                    tags.button("Unlink", type="submit", class_="unlink"),
                    action=here,
                    method="post",
                    class_="inline",
                ),
            ]
        return tags.span(*actions, class_="actions")

    @renderer
    def forms(self, request: Any, tag: Any) -> Any:
        if not self._writable:
            return tag(tags.p("This is a read-only view: it cannot be changed through this cap.", class_="hint", id="readonly-note"))
        here = self._urls.here
        done = tags.input(type="hidden", name="when_done", value=here)
        upload = tags.form(
            tags.h3("Upload a file here"),
            tags.input(type="hidden", name="t", value="upload"),
            done.clone(),
            tags.input(type="file", name="file", id="upload-file"),
            " ",
            _format_choice("format", _FILE_FORMATS),
            " ",
            tags.button("Upload", type="submit"),
            tags.div(class_="progress-area"),
            action=here,
            method="post",
            enctype="multipart/form-data",
            class_="card upload",
            id="upload-form",
        )
        mkdir = tags.form(
            tags.h3("Make a subdirectory"),
            tags.input(type="hidden", name="t", value="mkdir"),
            done.clone(),
            tags.input(type="text", name="name", placeholder="name", id="mkdir-name"),
            " ",
            _format_choice("format", _DIR_FORMATS),
            " ",
            tags.button("Create", type="submit"),
            action=here,
            method="post",
            enctype="multipart/form-data",
            class_="card",
            id="mkdir-form",
        )
        attach = tags.form(
            tags.h3("Attach an existing cap"),
            tags.input(type="hidden", name="t", value="uri"),
            done.clone(),
            tags.input(type="text", name="name", placeholder="name", id="attach-name"),
            tags.input(type="text", name="uri", placeholder="URI:...", id="attach-uri"),
            " ",
            tags.button("Attach", type="submit"),
            action=here,
            method="post",
            enctype="multipart/form-data",
            class_="card",
            id="attach-form",
        )
        return tag(upload, mkdir, attach)


class RenameForm(Element):
    """``GET /uri/$DIRCAP/?t=rename-form&name=NAME``: a form that renames one child, then comes back."""

    loader = template("rename.xml")

    def __init__(self, name: str, urls: PageURLs) -> None:
        super().__init__()
        self._name = name
        self._urls = urls

    @renderer
    def crumbs(self, request: Any, tag: Any) -> Any:
        return tag(tags.a("Welcome", href="/"), " / ", tags.a(self._urls.name, href=self._urls.here), " / rename")

    @renderer
    def heading(self, request: Any, tag: Any) -> Any:
        return tag("Rename ", tags.code(self._name))

    @renderer
    def form(self, request: Any, tag: Any) -> Any:
        here = self._urls.here
        return tag(
            tags.input(type="hidden", name="t", value="rename"),
            tags.input(type="hidden", name="from_name", value=self._name),
            tags.input(type="hidden", name="when_done", value=here),
            tags.label("New name: ", tags.input(type="text", name="to_name", value=self._name, id="to-name")),
            " ",
            tags.button("Rename", type="submit"),
            " ",
            tags.a("Cancel", href=here),
            action=here,
            method="post",
            enctype="multipart/form-data",
        )
