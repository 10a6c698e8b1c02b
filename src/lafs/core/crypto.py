"""The cryptography Tahoe uses, over pycryptodome: AES-CTR streams, RSA-PSS, Ed25519.

Formats match Tahoe-LAFS 1.20: RSA private keys are PKCS#8 DER, public keys
SubjectPublicKeyInfo DER, signatures RSA-PSS(SHA-256, MGF1-SHA-256, 32-byte
salt); Ed25519 keys are written ``priv-v0-<b32 seed>`` / ``pub-v0-<b32 key>``.
"""

from __future__ import annotations

import functools

from Crypto.Cipher import AES
from Crypto.Hash import SHA256
from Crypto.PublicKey import ECC, RSA
from Crypto.Signature import eddsa, pss
from Crypto.Signature.pss import MGF1
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from lafs.core import base32
from lafs.core.errors import Base32Error, FormatError, LafsError

AES_BLOCK_SIZE = 16
RSA_KEY_SIZE = 2048
RSA_PSS_SALT_LENGTH = 32
ED25519_PRIVATE_PREFIX = b"priv-v0-"
ED25519_PUBLIC_PREFIX = b"pub-v0-"


class KeyFormatError(FormatError):
    """A key in a form Tahoe would not accept."""


class BadSignatureError(LafsError):
    """A signature that does not verify."""


# --- AES-CTR ---------------------------------------------------------------------------


def _check_aes_key(key: bytes) -> None:
    if len(key) not in (16, 32):
        raise KeyFormatError(f"an AES key must be 16 or 32 bytes, got {len(key)}")


class AESCTRStream:
    """AES in counter mode from any byte offset of the keystream.

    Tahoe's counter block starts at ``initial_counter`` (zero for file
    contents) and counts as one 128-bit big-endian integer, so position
    ``offset`` is block ``offset // 16``, byte ``offset % 16``.
    Encryption and decryption are the same operation.
    """

    def __init__(self, key: bytes, offset: int = 0, initial_counter: int = 0) -> None:
        _check_aes_key(key)
        if offset < 0:
            raise ValueError("a keystream offset cannot be negative")
        block, skip = divmod(offset, AES_BLOCK_SIZE)
        counter = (initial_counter + block) % (1 << 128)
        self._cipher = AES.new(key, AES.MODE_CTR, nonce=b"", initial_value=counter.to_bytes(16, "big"))
        if skip:
            self._cipher.encrypt(b"\x00" * skip)
        self.offset = offset

    def process(self, data: bytes) -> bytes:
        self.offset += len(data)
        return self._cipher.encrypt(data)


def aes_ctr(key: bytes, data: bytes, offset: int = 0, iv: bytes | None = None) -> bytes:
    """Encrypt (or decrypt) ``data`` that starts ``offset`` bytes into the keystream.

    ``iv`` is the 16-byte initial counter block (all zero when omitted).
    """
    initial = 0
    if iv is not None:
        if len(iv) != AES_BLOCK_SIZE:
            raise KeyFormatError(f"an AES IV must be 16 bytes, got {len(iv)}")
        initial = int.from_bytes(iv, "big")
    return AESCTRStream(key, offset, initial).process(data)


_ZERO_COUNTER = modes.CTR(bytes(AES_BLOCK_SIZE))


def aes_ctr_short(key: bytes, data: bytes) -> bytes:
    """``aes_ctr(key, data)`` for many short strings under different keys (directory children's write caps).

    OpenSSL through ``cryptography`` sets up a key in about half the time pycryptodome takes.
    """
    _check_aes_key(key)
    encryptor = Cipher(algorithms.AES(key), _ZERO_COUNTER).encryptor()
    return encryptor.update(data) + encryptor.finalize()


# --- RSA (mutable files) ---------------------------------------------------------------


def rsa_generate(bits: int = RSA_KEY_SIZE) -> bytes:
    """A new RSA key (public exponent 65537) as PKCS#8 DER.

    Only 2048-bit keys can sign (as in Tahoe); ``bits`` exists for tests of
    that rule.  Randomness comes from pycryptodome's OS-backed generator.
    """
    key = RSA.generate(bits, e=65537)
    return bytes(key.export_key(format="DER", pkcs=8))


def _import_rsa_der(der: bytes, what: str) -> RSA.RsaKey:
    # pycryptodome also takes PEM and OpenSSH text; Tahoe only ever reads DER
    # (an ASN.1 SEQUENCE, so its first byte is 0x30).
    if not isinstance(der, bytes | bytearray) or not der.startswith(b"\x30"):
        raise KeyFormatError(f"not an RSA {what} key in DER form")
    try:
        return RSA.import_key(bytes(der))
    except (ValueError, IndexError, TypeError) as e:
        raise KeyFormatError(f"not an RSA {what} key in DER form: {e}") from None


def _rsa_private(private_der: bytes) -> RSA.RsaKey:
    return _rsa_private_cached(bytes(private_der))


@functools.lru_cache(maxsize=16)
def _rsa_private_cached(private_der: bytes) -> RSA.RsaKey:
    # Importing a private key costs ~15 ms of CPU (pycryptodome checks the key's consistency),
    # against ~1.5 ms to sign with it; making a mutable file imports the same key three times
    # (canonical form, public half, signature) and every write of it once more.
    key = _import_rsa_der(private_der, "private")
    if not key.has_private():
        raise KeyFormatError("an RSA public key was given where a private key is needed")
    if key.size_in_bits() != RSA_KEY_SIZE:
        # Tahoe 1.20 refuses to load any other size of signing key.
        raise KeyFormatError(f"only {RSA_KEY_SIZE}-bit RSA private keys are accepted, got {key.size_in_bits()} bits")
    return key


def _rsa_public(public_der: bytes) -> RSA.RsaKey:
    return _rsa_public_cached(bytes(public_der))


@functools.lru_cache(maxsize=64)
def _rsa_public_cached(public_der: bytes) -> RSA.RsaKey:
    # A mutable read checks the signature of every share it maps, each share carrying the same key:
    # importing it each time cost more than verifying.
    key = _import_rsa_der(public_der, "public")
    if key.has_private():
        raise KeyFormatError("an RSA private key was given where a public key is expected")
    return key


def rsa_public_der(private_der: bytes) -> bytes:
    """The SubjectPublicKeyInfo DER of a private key's public half."""
    return bytes(_rsa_private(private_der).public_key().export_key(format="DER"))


def rsa_private_der_canonical(private_der: bytes) -> bytes:
    """Re-serialise any accepted private key DER as PKCS#8 DER."""
    return bytes(_rsa_private(private_der).export_key(format="DER", pkcs=8))


def _pss_mask(seed: bytes, length: int) -> bytes:
    return bytes(MGF1(seed, length, SHA256))


def rsa_sign(private_der: bytes, data: bytes) -> bytes:
    """RSASSA-PSS(SHA-256, MGF1-SHA-256, 32-byte salt) signature of ``data`` (256 bytes)."""
    signer = pss.new(_rsa_private(private_der), mask_func=_pss_mask, salt_bytes=RSA_PSS_SALT_LENGTH)
    return bytes(signer.sign(SHA256.new(data)))


def rsa_verify(public_der: bytes, data: bytes, signature: bytes) -> None:
    """Raise BadSignatureError unless ``signature`` is a valid signature of ``data``."""
    verifier = pss.new(_rsa_public(public_der), mask_func=_pss_mask, salt_bytes=RSA_PSS_SALT_LENGTH)
    try:
        verifier.verify(SHA256.new(data), signature)
    except (ValueError, TypeError):
        raise BadSignatureError("RSA signature does not verify") from None


# --- Ed25519 (node keys, announcements) ------------------------------------------------


def ed25519_generate() -> bytes:
    """A new Ed25519 private key as its 32-byte seed."""
    return bytes(ECC.generate(curve="Ed25519").seed)


def _ed25519_private(seed: bytes) -> ECC.EccKey:
    if len(seed) != 32:
        raise KeyFormatError(f"an Ed25519 private key is 32 bytes, got {len(seed)}")
    return eddsa.import_private_key(seed)


def _ed25519_public(public: bytes) -> ECC.EccKey:
    if len(public) != 32:
        raise KeyFormatError(f"an Ed25519 public key is 32 bytes, got {len(public)}")
    try:
        return eddsa.import_public_key(public)
    except ValueError:
        raise KeyFormatError("not a valid Ed25519 public key (not a point on the curve)") from None


def ed25519_public_from_private(seed: bytes) -> bytes:
    return bytes(_ed25519_private(seed).public_key().export_key(format="raw"))


def _strip_prefix(text: bytes | str, prefix: bytes, what: str) -> bytes:
    if isinstance(text, str):
        text = text.encode("ascii", errors="replace")
    text = text.strip()
    if not text.startswith(prefix):
        raise KeyFormatError(f"an Ed25519 {what} key string must start with {prefix.decode()!r}")
    try:
        return base32.a2b(text[len(prefix) :])
    except Base32Error as e:
        raise KeyFormatError(f"Ed25519 {what} key string is not valid base32 ({e})") from None


def ed25519_private_to_string(seed: bytes) -> bytes:
    _ed25519_private(seed)
    return ED25519_PRIVATE_PREFIX + base32.b2a_bytes(seed)


def ed25519_private_from_string(text: bytes | str) -> bytes:
    seed = _strip_prefix(text, ED25519_PRIVATE_PREFIX, "private")
    _ed25519_private(seed)
    return seed


def ed25519_public_to_string(public: bytes) -> bytes:
    _ed25519_public(public)
    return ED25519_PUBLIC_PREFIX + base32.b2a_bytes(public)


def ed25519_public_from_string(text: bytes | str) -> bytes:
    public = _strip_prefix(text, ED25519_PUBLIC_PREFIX, "public")
    _ed25519_public(public)
    return public


def ed25519_sign(seed: bytes, data: bytes) -> bytes:
    return bytes(eddsa.new(_ed25519_private(seed), "rfc8032").sign(data))


def ed25519_verify(public: bytes, data: bytes, signature: bytes) -> None:
    """Raise BadSignatureError unless ``signature`` is a valid signature of ``data``."""
    verifier = eddsa.new(_ed25519_public(public), "rfc8032")
    try:
        verifier.verify(data, signature)
    except (ValueError, TypeError):
        raise BadSignatureError("Ed25519 signature does not verify") from None
