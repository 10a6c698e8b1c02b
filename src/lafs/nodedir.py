"""Node-directory facts: file names, markers, defaults, and the free-port helper.

What ``tahoe create-node``, ``create-client`` and ``create-introducer`` write
lives here, so the CLI and the local-grid runner make identical node
directories without one calling the other, and the node reads them by the
same names.  File names and contents follow Tahoe-LAFS 1.20.
"""

from __future__ import annotations

import os
import socket

import attrs
import yaml

from lafs.config import ConfigError

CONFIG_FILE = "tahoe.cfg"
PRIVATE_DIR = "private"
INTRODUCER_TAC = "tahoe-introducer.tac"
CLIENT_TAC = "tahoe-client.tac"
"""Markers of a node's kind; Tahoe 1.20 writes the same names (with twistd code we have no use for)."""
TAC_TEXT = "# This node directory is run with 'tahoe run'.\nimport sys\nsys.exit(1)\n"
INTRODUCERS_FILE = os.path.join(PRIVATE_DIR, "introducers.yaml")
PID_FILE = "running.process"
READY_MARKER = os.path.join("logs", "ready")
"""Written once a running node listens (and, for an introducer, has its fURL): ``tahoe start`` waits for it."""
DEFAULT_WEBPORT = "tcp:3456:interface=127.0.0.1"


class NodeDirectoryError(ConfigError):
    """A node directory that cannot be made where asked."""


def node_kind(basedir: str) -> str:
    """``"introducer"`` or ``"client"``, from the marker file ``tahoe create-*`` wrote."""
    if os.path.exists(os.path.join(basedir, INTRODUCER_TAC)):
        return "introducer"
    if os.path.exists(os.path.join(basedir, CLIENT_TAC)):
        return "client"
    if os.path.exists(os.path.join(basedir, CONFIG_FILE)):
        return "client"
    raise ConfigError(f"{basedir} is not a node directory (no tahoe.cfg)")


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick; another process may take it first)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


@attrs.frozen
class NodeSettings:
    """What a new node directory's ``tahoe.cfg`` says, as ``tahoe create-*`` options give it."""

    kind: str
    """``"node"``, ``"client"`` or ``"introducer"``."""
    tub_port: str
    tub_location: str
    nickname: str = ""
    webport: str = ""
    """A web endpoint, or empty for no web gateway."""
    hide_ip: bool = False
    introducer_furl: str = ""
    shares_needed: int = 3
    shares_happy: int = 7
    shares_total: int = 10
    storage: bool = False
    storage_dir: str | None = None
    helper: bool = False


def tahoe_cfg(settings: NodeSettings) -> str:
    """The text of a new node's ``tahoe.cfg``."""
    lines = [
        "# Settings of this Tahoe-LAFS node (read at start-up).",
        "# The keys are those of Tahoe-LAFS 1.20; see its docs/configuration.rst.",
        "",
        "[node]",
        f"nickname = {settings.nickname}",
        f"reveal-IP-address = {'false' if settings.hide_ip else 'true'}",
        f"web.port = {settings.webport}",
        "web.static = public_html",
        f"tub.port = {settings.tub_port}",
        f"tub.location = {settings.tub_location}",
        "",
    ]
    if settings.kind != "introducer":
        lines += [
            "[client]",
            "helper.furl =",
            "",
            "# Encoding for newly uploaded files: any `shares.needed` of `shares.total`",
            "# shares recover a file; uploads need `shares.happy` distinct servers.",
            f"shares.needed = {settings.shares_needed}",
            f"shares.happy = {settings.shares_happy}",
            f"shares.total = {settings.shares_total}",
            "",
            "[storage]",
            f"enabled = {'true' if settings.storage else 'false'}",
            "reserved_space = 1G",
        ]
        if settings.storage_dir:
            lines.append(f"storage_dir = {settings.storage_dir}")
        lines += ["", "[helper]", f"enabled = {'true' if settings.helper else 'false'}", ""]
    return "\n".join(lines) + "\n"


def is_free_for_a_node(basedir: str) -> bool:
    """A new node directory may be made here: nothing, or an empty directory."""
    return not (os.path.exists(basedir) and os.listdir(basedir))


def create_node_directory(basedir: str, settings: NodeSettings) -> None:
    """Write a new node directory: ``tahoe.cfg``, the kind's marker, ``private/`` (and its introducer list)."""
    if not is_free_for_a_node(basedir):
        raise NodeDirectoryError(f"the directory {basedir!r} already exists and is not empty; refusing to overwrite it")
    os.makedirs(os.path.join(basedir, PRIVATE_DIR), mode=0o700, exist_ok=True)
    with open(os.path.join(basedir, CONFIG_FILE), "w", encoding="utf-8") as f:
        f.write(tahoe_cfg(settings))
    marker = INTRODUCER_TAC if settings.kind == "introducer" else CLIENT_TAC
    with open(os.path.join(basedir, marker), "w", encoding="utf-8") as f:
        f.write(TAC_TEXT)
    if settings.kind != "introducer" and settings.introducer_furl:
        write_introducers(basedir, {"default": settings.introducer_furl})


def write_introducers(basedir: str, furls: dict[str, str]) -> None:
    """Replace ``private/introducers.yaml`` with these introducers, by petname."""
    introducers = {petname: {"furl": furl} for petname, furl in furls.items()}
    with open(os.path.join(basedir, INTRODUCERS_FILE), "w", encoding="utf-8") as f:
        yaml.safe_dump({"introducers": introducers}, f, default_flow_style=False)
