"""Capability strings: parse, serialise and attenuate every cap kind Tahoe-LAFS 1.20 knows.

A cap object is a frozen record of the cap's fields.  ``to_string()`` gives back
exactly the text Tahoe prints; ``get_readonly()`` and ``get_verify_cap()``
attenuate; ``get_storage_index()`` derives where the shares live.  Directory caps
wrap the cap of the file that holds the directory's contents.
"""

from __future__ import annotations

import abc
import re
from typing import ClassVar, Protocol, Self, TypeAlias

import attrs

from lafs.core import base32, hashes
from lafs.core.errors import Base32Error, FormatError

LIT_SIZE_THRESHOLD = 55
"""Files of at most this many bytes are stored inside the cap itself (a LIT cap)."""

ALLEGED_READONLY_PREFIX = "ro."
ALLEGED_IMMUTABLE_PREFIX = "imm."


class CapError(FormatError):
    """A cap string that is not a well-formed cap of a known kind."""


class MustBeDeepImmutableError(CapError):
    """A mutable cap where only immutable caps are allowed (inside an immutable directory)."""


class Cap(Protocol):
    """What every parsed cap offers."""

    @property
    def kind(self) -> str: ...

    def to_string(self) -> str: ...

    def to_bytes(self) -> bytes: ...

    def is_readonly(self) -> bool: ...

    def is_mutable(self) -> bool: ...

    def get_readonly(self) -> Cap: ...

    def get_verify_cap(self) -> Cap | None: ...

    def get_storage_index(self) -> bytes | None: ...


def _key(text: str, what: str, kind: str) -> bytes:
    """Decode a 128-bit base32 field (26 characters)."""
    return _fixed_b32(text, 16, what, kind)


def _hash(text: str, what: str, kind: str) -> bytes:
    """Decode a 256-bit base32 field (52 characters)."""
    return _fixed_b32(text, 32, what, kind)


def _fixed_b32(text: str, size: int, what: str, kind: str) -> bytes:
    expected = base32.encoded_length(size)
    if len(text) != expected:
        raise CapError(f"{kind} cap: {what} must be {expected} base32 characters, got {len(text)}")
    try:
        return base32.a2b(text)
    except Base32Error as e:
        raise CapError(f"{kind} cap: {what} is not valid base32 ({e})") from None


_DECIMAL = re.compile(r"\A[0-9]+\Z")


def _number(text: str, what: str, kind: str) -> int:
    if not _DECIMAL.match(text):
        raise CapError(f"{kind} cap: {what} must be a decimal number, got {text!r}")
    return int(text)


def _check_encoding(needed: int, total: int, kind: str) -> None:
    if not 1 <= needed <= total <= 256:
        raise CapError(f"{kind} cap: shares needed/total {needed}/{total} are not 1 <= k <= N <= 256")


def _fields(body: str, count: int, kind: str, *, extra_allowed: bool) -> list[str]:
    parts = body.split(":")
    if len(parts) < count or (len(parts) > count and not extra_allowed):
        raise CapError(f"{kind} cap must have {count} ':'-separated fields after its prefix, got {len(parts)}")
    return parts[:count]


def _b32(data: bytes) -> str:
    return base32.b2a(data)


# --- immutable files -------------------------------------------------------------------


class _ImmutableCap(abc.ABC):
    """What every immutable file cap (and verifier) shares: read-only, not mutable, ASCII text."""

    @abc.abstractmethod
    def to_string(self) -> str: ...

    def to_bytes(self) -> bytes:
        return self.to_string().encode("ascii")

    def is_readonly(self) -> bool:
        return True

    def is_mutable(self) -> bool:
        return False

    def get_readonly(self) -> Self:
        return self


@attrs.frozen
class LiteralFileCap(_ImmutableCap):
    """A tiny immutable file whose bytes are the cap itself (URI:LIT:)."""

    data: bytes
    kind: ClassVar[str] = "LIT"

    def to_string(self) -> str:
        return f"URI:LIT:{_b32(self.data)}"

    def get_verify_cap(self) -> None:
        return None

    def get_storage_index(self) -> None:
        return None

    @classmethod
    def parse_body(cls, body: str) -> LiteralFileCap:
        try:
            return cls(base32.a2b(body))
        except Base32Error as e:
            raise CapError(f"LIT cap: data is not valid base32 ({e})") from None


@attrs.frozen
class CHKFileCap(_ImmutableCap):
    """The read cap of an immutable file (URI:CHK:)."""

    key: bytes
    ueb_hash: bytes
    needed: int
    total: int
    size: int
    kind: ClassVar[str] = "CHK"

    def to_string(self) -> str:
        return f"URI:CHK:{_b32(self.key)}:{_b32(self.ueb_hash)}:{self.needed}:{self.total}:{self.size}"

    def get_verify_cap(self) -> CHKFileVerifierCap:
        return CHKFileVerifierCap(self.get_storage_index(), self.ueb_hash, self.needed, self.total, self.size)

    def get_storage_index(self) -> bytes:
        return hashes.storage_index_hash(self.key)

    @classmethod
    def parse_body(cls, body: str) -> CHKFileCap:
        key, ueb, needed, total, size = _fields(body, 5, cls.kind, extra_allowed=False)
        cap = cls(
            _key(key, "key", cls.kind),
            _hash(ueb, "URI extension hash", cls.kind),
            _number(needed, "shares needed", cls.kind),
            _number(total, "shares total", cls.kind),
            _number(size, "size", cls.kind),
        )
        _check_encoding(cap.needed, cap.total, cls.kind)
        return cap


@attrs.frozen
class CHKFileVerifierCap(_ImmutableCap):
    """Lets its holder check an immutable file's shares without reading it (URI:CHK-Verifier:)."""

    storage_index: bytes
    ueb_hash: bytes
    needed: int
    total: int
    size: int
    kind: ClassVar[str] = "CHK-Verifier"

    def to_string(self) -> str:
        return (
            f"URI:CHK-Verifier:{_b32(self.storage_index)}:{_b32(self.ueb_hash)}:"
            f"{self.needed}:{self.total}:{self.size}"
        )

    def get_verify_cap(self) -> CHKFileVerifierCap:
        return self

    def get_storage_index(self) -> bytes:
        return self.storage_index

    @classmethod
    def parse_body(cls, body: str) -> CHKFileVerifierCap:
        # Tahoe's pattern for verifiers is not anchored at the end: trailing text is ignored.
        si, ueb, needed, total, size = _fields(body, 5, cls.kind, extra_allowed=True)
        cap = cls(
            _key(si, "storage index", cls.kind),
            _hash(ueb, "URI extension hash", cls.kind),
            _number(needed, "shares needed", cls.kind),
            _number(total, "shares total", cls.kind),
            _number(_leading_digits(size), "size", cls.kind),
        )
        _check_encoding(cap.needed, cap.total, cls.kind)
        return cap


def _leading_digits(text: str) -> str:
    match = re.match(r"[0-9]+", text)
    return match.group(0) if match else text


# --- mutable files ---------------------------------------------------------------------


@attrs.frozen
class MutableCap:
    """Fields shared by the SDMF and MDMF write, read and verify caps."""

    secret: bytes
    fingerprint: bytes

    kind: ClassVar[str] = ""
    field_name: ClassVar[str] = ""
    # MDMF caps reserve trailing ':...' fields for extensions; SDMF caps are anchored.
    allows_extensions: ClassVar[bool] = False

    def to_string(self) -> str:
        return f"URI:{self.kind}:{_b32(self.secret)}:{_b32(self.fingerprint)}"

    def to_bytes(self) -> bytes:
        return self.to_string().encode("ascii")

    def is_mutable(self) -> bool:
        return True

    @classmethod
    def parse_body(cls, body: str) -> Self:
        secret, fingerprint = _fields(body, 2, cls.kind, extra_allowed=cls.allows_extensions)
        return cls(_key(secret, cls.field_name, cls.kind), _hash(fingerprint, "fingerprint", cls.kind))


class MutableWriteCap(MutableCap):
    field_name: ClassVar[str] = "writekey"
    read_cap_class: ClassVar[type[MutableReadCap]]

    @property
    def writekey(self) -> bytes:
        return self.secret

    def is_readonly(self) -> bool:
        return False

    def get_readonly(self) -> MutableReadCap:
        return self.read_cap_class(hashes.ssk_readkey_hash(self.secret), self.fingerprint)

    def get_verify_cap(self) -> MutableVerifierCap:
        return self.get_readonly().get_verify_cap()

    def get_storage_index(self) -> bytes:
        return self.get_readonly().get_storage_index()


class MutableReadCap(MutableCap):
    field_name: ClassVar[str] = "readkey"
    verifier_class: ClassVar[type[MutableVerifierCap]]

    @property
    def readkey(self) -> bytes:
        return self.secret

    def is_readonly(self) -> bool:
        return True

    def get_readonly(self) -> MutableReadCap:
        return self

    def get_verify_cap(self) -> MutableVerifierCap:
        return self.verifier_class(self.get_storage_index(), self.fingerprint)

    def get_storage_index(self) -> bytes:
        return hashes.ssk_storage_index_hash(self.secret)


class MutableVerifierCap(MutableCap):
    field_name: ClassVar[str] = "storage index"

    @property
    def storage_index(self) -> bytes:
        return self.secret

    def is_readonly(self) -> bool:
        return True

    def is_mutable(self) -> bool:
        return False

    def get_readonly(self) -> MutableVerifierCap:
        return self

    def get_verify_cap(self) -> MutableVerifierCap:
        return self

    def get_storage_index(self) -> bytes:
        return self.secret


@attrs.frozen
class SSKVerifierCap(MutableVerifierCap):
    kind: ClassVar[str] = "SSK-Verifier"


@attrs.frozen
class SSKReadCap(MutableReadCap):
    kind: ClassVar[str] = "SSK-RO"
    verifier_class: ClassVar[type[MutableVerifierCap]] = SSKVerifierCap


@attrs.frozen
class SSKWriteCap(MutableWriteCap):
    kind: ClassVar[str] = "SSK"
    read_cap_class: ClassVar[type[MutableReadCap]] = SSKReadCap


@attrs.frozen
class MDMFVerifierCap(MutableVerifierCap):
    kind: ClassVar[str] = "MDMF-Verifier"
    allows_extensions: ClassVar[bool] = True


@attrs.frozen
class MDMFReadCap(MutableReadCap):
    kind: ClassVar[str] = "MDMF-RO"
    allows_extensions: ClassVar[bool] = True
    verifier_class: ClassVar[type[MutableVerifierCap]] = MDMFVerifierCap


@attrs.frozen
class MDMFWriteCap(MutableWriteCap):
    kind: ClassVar[str] = "MDMF"
    allows_extensions: ClassVar[bool] = True
    read_cap_class: ClassVar[type[MutableReadCap]] = MDMFReadCap


FileCap: TypeAlias = (
    LiteralFileCap | CHKFileCap | CHKFileVerifierCap | MutableWriteCap | MutableReadCap | MutableVerifierCap
)

_FILE_KINDS: dict[str, type[FileCap]] = {
    cls.kind: cls
    for cls in (
        LiteralFileCap,
        CHKFileCap,
        CHKFileVerifierCap,
        SSKWriteCap,
        SSKReadCap,
        SSKVerifierCap,
        MDMFWriteCap,
        MDMFReadCap,
        MDMFVerifierCap,
    )
}

# Directory cap prefix (after "URI:") for each kind of file cap it can wrap.
_DIR_KIND_BY_FILE_KIND = {
    "SSK": "DIR2",
    "SSK-RO": "DIR2-RO",
    "SSK-Verifier": "DIR2-Verifier",
    "MDMF": "DIR2-MDMF",
    "MDMF-RO": "DIR2-MDMF-RO",
    "MDMF-Verifier": "DIR2-MDMF-Verifier",
    "CHK": "DIR2-CHK",
    "CHK-Verifier": "DIR2-CHK-Verifier",
    "LIT": "DIR2-LIT",
}
_FILE_KIND_BY_DIR_KIND = {d: f for f, d in _DIR_KIND_BY_FILE_KIND.items()}


# --- directories -----------------------------------------------------------------------


@attrs.frozen
class DirectoryCap:
    """A directory cap: the cap of the file holding the directory, under a DIR2 prefix."""

    file_cap: FileCap

    @property
    def kind(self) -> str:
        return _DIR_KIND_BY_FILE_KIND[self.file_cap.kind]

    def to_string(self) -> str:
        inner = self.file_cap.to_string()
        return f"URI:{self.kind}:" + inner[len(f"URI:{self.file_cap.kind}:") :]

    def to_bytes(self) -> bytes:
        return self.to_string().encode("ascii")

    def is_readonly(self) -> bool:
        return self.file_cap.is_readonly()

    def is_mutable(self) -> bool:
        return self.file_cap.is_mutable()

    def get_readonly(self) -> DirectoryCap:
        return DirectoryCap(self.file_cap.get_readonly())

    def get_verify_cap(self) -> DirectoryCap | None:
        verifier = self.file_cap.get_verify_cap()
        return None if verifier is None else DirectoryCap(verifier)

    def get_storage_index(self) -> bytes | None:
        return self.file_cap.get_storage_index()


@attrs.frozen
class UnknownCap:
    """A cap of a kind this version does not know; kept verbatim so nothing is lost."""

    text: str
    error: str | None = None
    kind: ClassVar[str] = "unknown"

    def to_string(self) -> str:
        return self.text

    def to_bytes(self) -> bytes:
        return self.text.encode("utf-8")

    def is_readonly(self) -> bool:
        return False

    def is_mutable(self) -> bool:
        return False

    def get_readonly(self) -> UnknownCap:
        return self

    def get_verify_cap(self) -> None:
        return None

    def get_storage_index(self) -> None:
        return None


AnyCap: TypeAlias = FileCap | DirectoryCap | UnknownCap

_KIND_RE = re.compile(r"\AURI:([A-Za-z0-9-]+):")


def _is_immutable_kind(cap: FileCap | DirectoryCap) -> bool:
    return not cap.is_mutable() and cap.kind != "unknown"


def _parse_known(text: str) -> FileCap | DirectoryCap | None:
    """Parse a cap without ro./imm. prefix; None when the kind is unknown."""
    match = _KIND_RE.match(text)
    if match is None:
        return None
    kind, body = match.group(1), text[match.end() :]
    if kind in _FILE_KINDS:
        return _FILE_KINDS[kind].parse_body(body)
    if kind in _FILE_KIND_BY_DIR_KIND:
        return DirectoryCap(_FILE_KINDS[_FILE_KIND_BY_DIR_KIND[kind]].parse_body(body))
    return None


def _decode(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            raise CapError("cap is not valid UTF-8 text") from None
    return text


def from_string_strict(text: str | bytes, deep_immutable: bool = False) -> FileCap | DirectoryCap:
    """Parse a cap of a known kind, raising CapError that names the problem otherwise."""
    text = _decode(text)
    if not text:
        raise CapError("empty cap")
    bare = text
    must_be_readonly = must_be_immutable = False
    if bare.startswith(ALLEGED_READONLY_PREFIX):
        bare, must_be_readonly = bare[len(ALLEGED_READONLY_PREFIX) :], True
    elif bare.startswith(ALLEGED_IMMUTABLE_PREFIX):
        bare, must_be_immutable = bare[len(ALLEGED_IMMUTABLE_PREFIX) :], True
    cap = _parse_known(bare)
    if cap is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise CapError(f"not a cap of any kind Tahoe-LAFS 1.20 knows: {shown!r}")
    if must_be_readonly and not cap.is_readonly():
        raise CapError(f"a write cap ({cap.kind}) carries the read-only prefix 'ro.'")
    if must_be_immutable and not _is_immutable_kind(cap):
        raise MustBeDeepImmutableError(f"a mutable cap ({cap.kind}) carries the immutable prefix 'imm.'")
    if deep_immutable and not _is_immutable_kind(cap):
        raise MustBeDeepImmutableError(f"a mutable cap ({cap.kind}) where only immutable caps are allowed")
    return cap


def from_string(text: str | bytes, deep_immutable: bool = False) -> AnyCap:
    """Parse any cap; what is not a well-formed known cap becomes an UnknownCap kept verbatim."""
    try:
        return from_string_strict(text, deep_immutable)
    except CapError as e:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return UnknownCap(text, error=str(e))
