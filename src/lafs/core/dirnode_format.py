"""The serialized contents of a Tahoe-LAFS 1.20 directory, and pure edits of its children.

A directory is a file (mutable SDMF/MDMF, or immutable CHK/LIT) whose plaintext
is one netstring per child, sorted by NFC name::

    ns( ns(name_utf8) || ns(ro_uri) || ns(rwcapdata) || ns(metadata_json) )

``rwcapdata`` hides the child's write cap from read-only holders: it is
``salt || AES-CTR(key)(rw_uri) || mac`` with the salt and key derived from the
rw_uri and the directory's writekey (hashes.mutable_rwcap_*), so it is
deterministic and pack(unpack(x)) gives x back byte for byte.

Three layers, all pure:

* ``pack_children`` / ``unpack_children``: bytes <-> ``Child`` records holding
  the *stored* slots (the ro slot as written, the decrypted rw slot or None).
  Nothing is dropped or rewritten here, so unknown caps survive verbatim.
* ``describe_child``: what the real Tahoe shows for a stored child (its node's
  write and read caps, with ``ro.``/``imm.`` prefixes on unknown caps), or the
  error that makes Tahoe hide it.
* ``make_child``, ``set_child``, ``set_children``, ``delete_child``,
  ``rename_child``, ``update_metadata``: the edits later directory nodes make,
  with Tahoe's overwrite and metadata rules.  Time is passed in.

Cap strings are ``str``.  Stored cap bytes that are not UTF-8 are decoded with
``surrogateescape`` so they still pack back to the same bytes.
"""

from __future__ import annotations

import functools
import hmac as _hmac
import json
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import attrs

from lafs.core import caps, hashes
from lafs.core.caps import MustBeDeepImmutableError
from lafs.core.crypto import aes_ctr_short
from lafs.core.errors import FormatError, LafsError
from lafs.core.netstring import netstring, parse_netstring

__all__ = [
    "Child",
    "ChildCaps",
    "ChildNameError",
    "DirectoryChildError",
    "DirnodeFormatError",
    "ExistingChildError",
    "Metadata",
    "MustBeDeepImmutableError",
    "NoSuchChildError",
    "Overwrite",
    "decrypt_rw_uri",
    "delete_child",
    "describe_child",
    "encrypt_rw_uri",
    "make_child",
    "normalize_name",
    "pack_children",
    "rename_child",
    "set_child",
    "set_children",
    "unpack_children",
    "update_metadata",
    "validate_name",
]

Metadata: TypeAlias = dict[str, Any]
"""A child's metadata: a JSON object.  System keys live under ``"tahoe"``."""

Overwrite: TypeAlias = bool | Literal["only-files"]
"""Tahoe's replace rule: True replaces, False refuses, "only-files" refuses to replace a directory."""

SALT_SIZE = 16
MAC_SIZE = 32
RWCAP_OVERHEAD = SALT_SIZE + MAC_SIZE
"""rwcapdata is never shorter than this: even an absent rw cap is written as salt + MAC."""

# The cap kinds whose prefix Tahoe dispatches on.  A cap that starts with one of these but
# does not parse is broken (Tahoe hides it); anything else is an unknown cap, kept verbatim.
_KNOWN_PREFIXES = tuple(
    f"URI:{kind}:"
    for kind in (
        "LIT", "CHK", "CHK-Verifier", "SSK", "SSK-RO", "SSK-Verifier", "MDMF", "MDMF-RO",
        "MDMF-Verifier", "DIR2", "DIR2-RO", "DIR2-Verifier", "DIR2-MDMF", "DIR2-MDMF-RO",
        "DIR2-MDMF-Verifier", "DIR2-CHK", "DIR2-CHK-Verifier", "DIR2-LIT",
    )
)
_RO = caps.ALLEGED_READONLY_PREFIX
_IMM = caps.ALLEGED_IMMUTABLE_PREFIX


# --- errors ----------------------------------------------------------------------------


class DirnodeFormatError(FormatError):
    """Directory contents that do not follow Tahoe's serialized format."""


class DirectoryChildError(LafsError):
    """An edit of a directory's children that cannot be done; ``name`` is the child concerned."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class ExistingChildError(DirectoryChildError):
    """A child of that name exists and the overwrite rule forbids replacing it."""


class NoSuchChildError(DirectoryChildError):
    """No child of that name."""


class ChildNameError(DirectoryChildError):
    """A name Tahoe refuses for a new link: empty, or containing '/'."""


# --- values ----------------------------------------------------------------------------


@attrs.frozen
class Child:
    """One stored entry: its name (NFC), its read slot, its write slot and its metadata.

    ``rw_uri`` is None when the entry has no write cap, and always None when the
    directory was read without its writekey (read-only diminishing).
    """

    name: str
    ro_uri: str | None
    # A write cap is a secret: it stays out of reprs (and so out of logs and test output).
    rw_uri: str | None = attrs.field(default=None, repr=False)
    metadata: Metadata = attrs.field(factory=dict)
    # What unpack_children read from the rw slot, so packing the child again into the same
    # directory can reuse it instead of re-encrypting: (writekey, rwcap key, rwcapdata,
    # decrypted bytes).  Not part of the value (eq, hash, repr).
    stored_rw: tuple[bytes, bytes, bytes, bytes] | None = attrs.field(
        default=None, eq=False, repr=False, kw_only=True
    )


@attrs.frozen
class ChildCaps:
    """What Tahoe's node for a stored child offers: the caps a listing shows, or why it is hidden.

    ``cap`` is the parsed cap for known kinds, None for unknown caps.  ``error`` is
    set when Tahoe would make an erroring "unknown" node, which its directory
    reader leaves out of the listing.
    """

    write_uri: str | None = attrs.field(repr=False)
    read_uri: str | None
    cap: caps.FileCap | caps.DirectoryCap | None
    error: str | None = None
    # True when the error is a mutable cap where only immutable ones may go ('imm.', DIR2-CHK).
    mutable_in_immutable: bool = False

    @property
    def is_unknown(self) -> bool:
        return self.cap is None

    @property
    def is_directory(self) -> bool:
        return isinstance(self.cap, caps.DirectoryCap)


# --- names -----------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """The form Tahoe stores and compares names in: Unicode NFC."""
    return unicodedata.normalize("NFC", name)


def validate_name(name: str) -> str:
    """Check a name for a new link and return it NFC-normalized.

    Stored directories may hold any name (Tahoe reads them), but a new link's
    name must be non-empty and free of '/', which would make paths ambiguous.
    """
    if not isinstance(name, str):
        raise ChildNameError(repr(name), f"a child name must be text, got {type(name).__name__}")
    normalized = normalize_name(name)
    if not normalized:
        raise ChildNameError(normalized, "a child name cannot be empty")
    if "/" in normalized:
        raise ChildNameError(normalized, f"a child name cannot contain '/': {normalized!r}")
    return normalized


# --- rw cap encryption -----------------------------------------------------------------


def encrypt_rw_uri(writekey: bytes, rw_uri: bytes) -> bytes:
    """``salt || AES-CTR(key, IV=0)(rw_uri) || mac``; the salt is a hash of rw_uri itself.

    The salt being deterministic (not random, whatever dirnodes.rst says) is what
    makes a re-packed directory byte-identical.  The MAC is only for old readers.
    """
    if not rw_uri:
        return _empty_rwcapdata(writekey)
    salt = hashes.mutable_rwcap_salt_hash(rw_uri)
    key = hashes.mutable_rwcap_key_hash(salt, writekey)
    crypttext = aes_ctr_short(key, rw_uri)
    return salt + crypttext + hashes.hmac(key, salt + crypttext)


@functools.lru_cache(maxsize=64)
def _empty_rwcapdata(writekey: bytes) -> bytes:
    """An absent rw cap's 48 bytes (salt and MAC of nothing): the same for every such child of a directory."""
    salt = hashes.mutable_rwcap_salt_hash(b"")
    key = hashes.mutable_rwcap_key_hash(salt, writekey)
    return salt + hashes.hmac(key, salt)


def _reuse_rwcapdata(writekey: bytes, rw_bytes: bytes, stored: tuple[bytes, bytes, bytes, bytes] | None) -> bytes | None:
    """The stored rwcapdata if it is exactly what encrypt_rw_uri would write for ``rw_bytes``, else None.

    The crypttext is right by construction (it decrypted to ``rw_bytes`` under
    the key its salt gives); the salt and MAC are checked, so a slot written
    some other way is re-encrypted, as Tahoe would.
    """
    if stored is None:
        return None
    stored_writekey, key, rwcapdata, decrypted = stored
    if stored_writekey != writekey or decrypted != rw_bytes:
        return None
    salt, mac = rwcapdata[:SALT_SIZE], rwcapdata[-MAC_SIZE:]
    if salt != hashes.mutable_rwcap_salt_hash(rw_bytes):
        return None
    if not _hmac.compare_digest(mac, hashes.hmac(key, rwcapdata[:-MAC_SIZE])):
        return None
    return rwcapdata


def decrypt_rw_uri(writekey: bytes, rwcapdata: bytes) -> bytes:
    """Recover the rw cap bytes from ``rwcapdata``; the MAC is not checked (Tahoe >= 1.3 doesn't)."""
    if len(rwcapdata) < RWCAP_OVERHEAD:
        raise DirnodeFormatError(
            f"rwcapdata is {len(rwcapdata)} bytes, shorter than its {RWCAP_OVERHEAD}-byte salt and MAC"
        )
    return _decrypt_rw_uri(writekey, rwcapdata)[1]


def _decrypt_rw_uri(writekey: bytes, rwcapdata: bytes) -> tuple[bytes, bytes]:
    """(the child's rwcap key, the rw cap bytes) of a well-sized ``rwcapdata``."""
    salt = rwcapdata[:SALT_SIZE]
    key = hashes.mutable_rwcap_key_hash(salt, writekey)
    if len(rwcapdata) == RWCAP_OVERHEAD:
        return key, b""
    return key, aes_ctr_short(key, rwcapdata[SALT_SIZE:-MAC_SIZE])


# --- pack / unpack ---------------------------------------------------------------------


def _cap_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _cap_text(data: bytes) -> str | None:
    # Tahoe strips trailing spaces from both slots and treats an empty slot as absent.
    data = data.rstrip(b" ")
    return data.decode("utf-8", "surrogateescape") if data else None


def _stored_ro(ro_uri: str | None, deep_immutable: bool) -> bytes:
    """The read slot as Tahoe writes it: 'ro.' stripped; 'imm.' too, but only in immutable dirs."""
    if not ro_uri:
        return b""
    if ro_uri.startswith(_RO):
        ro_uri = ro_uri[len(_RO) :]
    elif deep_immutable and ro_uri.startswith(_IMM):
        ro_uri = ro_uri[len(_IMM) :]
    return _cap_bytes(ro_uri)


def _check_deep_immutable(child: Child) -> None:
    if child.rw_uri is not None:
        raise MustBeDeepImmutableError(f"child {child.name!r} of an immutable directory has a write cap")
    described = _interpret(None, child.ro_uri, deep_immutable=True)
    if described.error is not None:
        raise MustBeDeepImmutableError(f"child {child.name!r}: {described.error}")


def _encode_metadata(name: str, metadata: Metadata) -> bytes:
    if not isinstance(metadata, dict):
        raise DirnodeFormatError(f"metadata of child {name!r} must be a dict, got {type(metadata).__name__}")
    try:
        # json.dumps with its defaults (", " / ": " separators, ASCII escapes) is Tahoe's encoding.
        return json.dumps(metadata).encode("utf-8")
    except (TypeError, ValueError) as e:
        raise DirnodeFormatError(f"metadata of child {name!r} is not JSON-serializable: {e}") from None


def pack_children(
    children: Mapping[str, Child] | Iterable[Child],
    writekey: bytes | None,
    *,
    deep_immutable: bool = False,
) -> bytes:
    """Serialize children as Tahoe writes a directory's plaintext (``b""`` when empty).

    With a ``writekey`` each rw slot is encrypted (an absent one still gives 48
    bytes); without one the rw slot is empty, as in immutable directories.
    ``deep_immutable`` (DIR2-CHK / DIR2-LIT contents) refuses write caps and
    mutable caps with MustBeDeepImmutableError.
    """
    items = children.values() if isinstance(children, Mapping) else children
    by_name: dict[str, Child] = {}
    for child in items:
        name = normalize_name(child.name)
        if name in by_name:
            raise DirnodeFormatError(f"two children are named {name!r} once NFC-normalized")
        by_name[name] = child
    pieces = []
    for name in sorted(by_name):
        child = by_name[name]
        if deep_immutable:
            _check_deep_immutable(child)
        if writekey is not None:
            rw_bytes = _cap_bytes(child.rw_uri) if child.rw_uri else b""
            reused = _reuse_rwcapdata(writekey, rw_bytes, child.stored_rw) if rw_bytes else None
            rwcapdata = reused if reused is not None else encrypt_rw_uri(writekey, rw_bytes)
        else:
            rwcapdata = b""
        name_bytes = name.encode("utf-8")
        ro_bytes = _stored_ro(child.ro_uri, deep_immutable)
        metadata_bytes = _encode_metadata(name, child.metadata)
        entry = b"%d:%s,%d:%s,%d:%s,%d:%s," % (
            len(name_bytes), name_bytes, len(ro_bytes), ro_bytes,
            len(rwcapdata), rwcapdata, len(metadata_bytes), metadata_bytes,
        )
        pieces.append(netstring(entry))
    return b"".join(pieces)


def _netstrings(data: bytes, what: str) -> list[bytes]:
    items: list[bytes] = []
    position = 0
    while position < len(data):
        try:
            item, position = parse_netstring(data, position)
        except FormatError as e:
            raise DirnodeFormatError(f"{what}: {e}") from None
        items.append(item)
    return items


def unpack_children(data: bytes, writekey: bytes | None, *, deep_immutable: bool = False) -> dict[str, Child]:
    """Parse a directory's plaintext into its stored children, keyed by NFC name.

    Without ``writekey`` (a read-only cap) rw slots are not decrypted and come
    out None.  Like Tahoe's reader this accepts entries in any order (a later
    duplicate wins) and ignores netstrings after the fourth in an entry; it
    raises DirnodeFormatError on anything it cannot read.
    """
    if not isinstance(data, bytes):
        raise DirnodeFormatError(f"directory contents must be bytes, got {type(data).__name__}")
    children: dict[str, Child] = {}
    for index, entry in enumerate(_netstrings(data, "directory contents")):
        what = f"directory entry {index}"
        fields = _netstrings(entry, what)
        if len(fields) < 4:
            raise DirnodeFormatError(f"{what} has {len(fields)} netstrings, needs 4")
        name_bytes, ro_bytes, rwcapdata, metadata_bytes = fields[:4]
        try:
            name = normalize_name(name_bytes.decode("utf-8"))
        except UnicodeDecodeError:
            raise DirnodeFormatError(f"{what}: the name is not UTF-8") from None
        what = f"directory entry {name!r}"
        rw_uri: str | None = None
        stored_rw = None
        if deep_immutable:
            if rwcapdata:
                raise DirnodeFormatError(f"{what}: rwcapdata must be empty in an immutable directory")
        elif writekey is not None and rwcapdata and len(rwcapdata) != RWCAP_OVERHEAD:
            # (An rwcapdata of just salt and MAC holds no cap: nothing to decrypt.)
            if len(rwcapdata) < RWCAP_OVERHEAD:
                raise DirnodeFormatError(
                    f"{what}: rwcapdata is {len(rwcapdata)} bytes, shorter than its {RWCAP_OVERHEAD}-byte salt and MAC"
                )
            key, rw_bytes = _decrypt_rw_uri(writekey, rwcapdata)
            rw_uri = _cap_text(rw_bytes)
            stored_rw = (writekey, key, rwcapdata, rw_bytes)
        try:
            metadata = json.loads(metadata_bytes.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise DirnodeFormatError(f"{what}: metadata is not JSON ({e})") from None
        if not isinstance(metadata, dict):
            raise DirnodeFormatError(f"{what}: metadata must be a JSON object, got {type(metadata).__name__}")
        children[name] = Child(name, _cap_text(ro_bytes), rw_uri, metadata, stored_rw=stored_rw)
    return children


# --- what Tahoe makes of a child's caps ------------------------------------------------


def _strip_prefixes(text: str) -> str:
    for prefix in (_RO, _IMM):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


_Parsed: TypeAlias = tuple[caps.FileCap | caps.DirectoryCap | None, caps.CapError | None]


def _parse(text: str, deep_immutable: bool) -> _Parsed:
    """(known cap, None), (None, None) for an unknown kind, or (None, error) for a broken cap."""
    try:
        return caps.from_string_strict(text, deep_immutable), None
    except caps.CapError as e:
        if _strip_prefixes(text).startswith(_KNOWN_PREFIXES) or isinstance(e, MustBeDeepImmutableError):
            return None, e
        return None, None


def _known(cap: caps.FileCap | caps.DirectoryCap) -> ChildCaps:
    write = None if cap.is_readonly() else cap.to_string()
    return ChildCaps(write, cap.get_readonly().to_string(), cap)


def _interpret(write: str | None, read: str | None, deep_immutable: bool) -> ChildCaps:
    # Mirrors what the real Tahoe's node maker builds from (write, read), as observed on 1.20.
    write = write or None
    read = read or None
    if write is not None:
        cap, error = _parse(write, deep_immutable=False)
        if cap is not None:
            if deep_immutable and cap.is_mutable():
                reason = f"a mutable cap ({cap.kind}) in an immutable directory"
                return ChildCaps(None, None, None, reason, mutable_in_immutable=True)
            return _known(cap)
        if deep_immutable:
            reason = "an unknown write cap cannot be a child of an immutable directory"
            return ChildCaps(None, None, None, reason, mutable_in_immutable=True)
        if read is None:
            reason = str(error) if error else "an unknown write cap needs a read cap beside it"
            return ChildCaps(None, None, None, reason)
        if read.startswith(_IMM):
            # 'imm.' claims immutability, which a link with a write cap contradicts.
            reason = "an unknown write cap beside a read cap marked 'imm.'"
            return ChildCaps(None, None, None, reason, mutable_in_immutable=True)
        # An unknown write cap: both kept verbatim; the read cap is marked as alleged read-only.
        shown = read if read.startswith(_RO) else _RO + read
        return ChildCaps(write, shown, None)
    if read is None:
        return ChildCaps(None, None, None)
    cap, error = _parse(read, deep_immutable)
    if cap is not None:
        return _known(cap)
    if error is not None:
        immutability = isinstance(error, MustBeDeepImmutableError)
        return ChildCaps(None, None, None, str(error), mutable_in_immutable=immutability)
    if deep_immutable:
        return ChildCaps(None, _IMM + _strip_prefixes(read), None)
    return ChildCaps(None, read if read.startswith((_RO, _IMM)) else _RO + read, None)


# A directory's children are described again at every listing and lookup: keep the answers
# (ChildCaps and the caps in it are immutable values).
_interpret_uncached = _interpret
_interpret = functools.lru_cache(maxsize=1 << 15)(_interpret_uncached)


def describe_child(child: Child, *, deep_immutable: bool = False, writable: bool = True) -> ChildCaps:
    """The caps Tahoe lists for a stored child, or the error for which it hides the child.

    ``writable=False`` (the directory was read through a read-only cap) always
    gives a read-only result, even if a write cap was stored in the read slot:
    read-only access must reach the whole subtree.
    """
    described = _interpret(child.rw_uri, child.ro_uri, deep_immutable)
    if writable or described.write_uri is None:
        return described
    if described.cap is not None:
        return _known(described.cap.get_readonly())
    return ChildCaps(None, described.read_uri, None, described.error, described.mutable_in_immutable)


# --- metadata --------------------------------------------------------------------------


def update_metadata(old: Metadata | None, new: Metadata | None, now: float) -> Metadata:
    """Tahoe's rule for a link's metadata when it is created (``old`` None) or updated.

    ``new`` (user metadata) replaces the old keys, except that the old ``"tahoe"``
    dict is kept and any ``"tahoe"`` in ``new`` is ignored.  ``linkcrtime`` is set
    once (from a legacy top-level ``ctime`` of the old metadata if there is one);
    ``linkmotime`` is set to ``now`` every time.  Key order follows Tahoe's, since
    it shows in the packed JSON.  Returns a new dict.
    """
    old = {} if old is None else old
    if new is None:
        result = {key: value for key, value in old.items()}
    else:
        result = {key: value for key, value in new.items() if key != "tahoe"}
        if "tahoe" in old:
            result["tahoe"] = old["tahoe"]
    system = dict(result.get("tahoe") or {})
    if "linkcrtime" not in system:
        system["linkcrtime"] = old.get("ctime", now)
    system["linkmotime"] = now
    result["tahoe"] = system
    return result


# --- edits -----------------------------------------------------------------------------


def make_child(
    name: str,
    write_uri: str | None,
    read_uri: str | None,
    metadata: Metadata | None = None,
    *,
    deep_immutable: bool = False,
) -> Child:
    """The entry Tahoe stores when linking (write_uri, read_uri) under ``name``.

    A known write cap determines the read slot (its read-only form) whatever
    ``read_uri`` says; an unknown write cap needs a read cap beside it; a write
    cap given as the read cap still links writably (as Tahoe does).  Metadata
    is stored as given (see update_metadata / set_child for the timestamps).
    Raises ChildNameError, MustBeDeepImmutableError or caps.CapError.
    """
    name = validate_name(name)
    described = _interpret(write_uri, read_uri, deep_immutable)
    if described.error is not None:
        if described.mutable_in_immutable:
            raise MustBeDeepImmutableError(f"child {name!r}: {described.error}")
        raise caps.CapError(f"child {name!r}: {described.error}")
    if described.write_uri is None and described.read_uri is None:
        raise caps.CapError(f"child {name!r}: a link needs a write cap or a read cap")
    ro = _stored_ro(described.read_uri, deep_immutable).decode("utf-8", "surrogateescape")
    return Child(name, ro or None, described.write_uri, dict(metadata or {}))


def _is_directory(child: Child, deep_immutable: bool) -> bool:
    return _interpret(child.rw_uri, child.ro_uri, deep_immutable).is_directory


def set_child(
    children: Mapping[str, Child],
    child: Child,
    *,
    now: float,
    overwrite: Overwrite = True,
    deep_immutable: bool = False,
) -> dict[str, Child]:
    """A copy of ``children`` with ``child`` linked under its (validated, NFC) name.

    ``child.metadata`` is the new user metadata; timestamps follow
    update_metadata against the entry it replaces.  ``overwrite``: True replaces,
    False raises ExistingChildError, "only-files" raises it only when the
    existing child is a directory.  Metadata ``"no-write": true`` links the
    read-only cap only.
    """
    name = validate_name(child.name)
    existing = children.get(name)
    if existing is not None:
        if overwrite is False:
            raise ExistingChildError(name, f"a child named {name!r} already exists")
        if overwrite == "only-files" and _is_directory(existing, deep_immutable):
            raise ExistingChildError(name, f"a directory named {name!r} already exists")
    metadata = update_metadata(existing.metadata if existing else None, child.metadata, now)
    rw_uri = None if metadata.get("no-write") else child.rw_uri
    result = dict(children)
    result[name] = Child(name, child.ro_uri, rw_uri, metadata)
    return result


def set_children(
    children: Mapping[str, Child],
    new: Iterable[Child],
    *,
    now: float,
    overwrite: Overwrite = True,
    deep_immutable: bool = False,
) -> dict[str, Child]:
    """``set_child`` for several children at once: all are linked, or none (the first conflict raises)."""
    result = dict(children)
    for child in new:
        result = set_child(result, child, now=now, overwrite=overwrite, deep_immutable=deep_immutable)
    return result


def delete_child(children: Mapping[str, Child], name: str) -> tuple[dict[str, Child], Child]:
    """A copy of ``children`` without ``name``, and the removed child; NoSuchChildError if absent."""
    name = normalize_name(name)
    if name not in children:
        raise NoSuchChildError(name, f"no child named {name!r}")
    result = dict(children)
    removed = result.pop(name)
    return result, removed


def rename_child(
    children: Mapping[str, Child],
    old_name: str,
    new_name: str,
    *,
    now: float,
    overwrite: Overwrite = True,
    deep_immutable: bool = False,
) -> dict[str, Child]:
    """Move a link to a new name in the same directory (Tahoe's move: unlink, then link anew).

    The link keeps its caps and user metadata; as for any new link its
    ``"tahoe"`` timestamps are set afresh (or taken from an entry it replaces).
    Renaming to the same name changes nothing.
    """
    old_name = normalize_name(old_name)
    new_name = validate_name(new_name)
    if old_name not in children:
        raise NoSuchChildError(old_name, f"no child named {old_name!r}")
    if old_name == new_name:
        return dict(children)
    remaining, moved = delete_child(children, old_name)
    relinked = Child(new_name, moved.ro_uri, moved.rw_uri, moved.metadata)
    return set_child(remaining, relinked, now=now, overwrite=overwrite, deep_immutable=deep_immutable)
