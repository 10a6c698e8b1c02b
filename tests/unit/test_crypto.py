"""AES-CTR, RSA-PSS and Ed25519 as Tahoe uses them (facts brief §13.7), cross-checked with real Tahoe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import crypto

VECTORS = json.loads((Path(__file__).parent / "data" / "crypto_vectors.json").read_text())


def test_aes_known_answers() -> None:
    assert crypto.aes_ctr(b"\x00" * 16, b"\x00" * 16).hex() == "66e94bd4ef8a2c3b884cfa59ca342b2e"
    expected = "dc95c078a2408989ad48a21492842087530f8afbc74536b9a963b4f1c4cb738b"
    assert crypto.aes_ctr(b"\x00" * 32, b"\x00" * 32).hex() == expected
    stream = crypto.AESCTRStream(b"\x00" * 32)
    assert (stream.process(b"\x00" * 15) + stream.process(b"\x00" * 17)).hex() == expected
    key = b"My\x9c\xc0f\xd3\x03\x9a1\x8f\xbd\x17W_\x1f2"
    assert crypto.aes_ctr(key, b"test") == b"\x7fEK\\"
    iv = b"\x96\x1c\xa0\xbcUj\x89\xc1\x85J\x1f\xeb=\x17\x04\xca"
    assert crypto.aes_ctr(key, b"test", iv=iv) == b"\x82\x0e\rt"


def test_aes_matches_real_tahoe_at_every_offset() -> None:
    key = bytes.fromhex(VECTORS["aes_key"])
    plaintext = bytes(i % 251 for i in range(1000))
    ciphertext = bytes.fromhex(VECTORS["aes_ciphertext"])
    assert crypto.aes_ctr(key, plaintext) == ciphertext
    for offset in (1, 15, 16, 17, 500, 999):
        assert crypto.aes_ctr(key, plaintext[offset:], offset=offset) == ciphertext[offset:]


@given(st.binary(max_size=200), st.lists(st.integers(0, 50), max_size=6))
def test_aes_stream_in_pieces_equals_one_shot(data: bytes, cuts: list[int]) -> None:
    key = b"k" * 16
    stream = crypto.AESCTRStream(key)
    out, position = [], 0
    for cut in cuts:
        out.append(stream.process(data[position : position + cut]))
        position += cut
    out.append(stream.process(data[position:]))
    assert b"".join(out) == crypto.aes_ctr(key, data)


def test_aes_rejects_bad_keys() -> None:
    with pytest.raises(crypto.KeyFormatError, match="16 or 32 bytes"):
        crypto.aes_ctr(b"short", b"data")
    with pytest.raises(crypto.KeyFormatError, match="IV"):
        crypto.aes_ctr(b"k" * 16, b"data", iv=b"x")


@pytest.fixture(scope="module")
def our_rsa_key() -> bytes:
    return crypto.rsa_generate()


def test_rsa_signature_from_real_tahoe_verifies() -> None:
    private = bytes.fromhex(VECTORS["rsa_private_der"])
    public = bytes.fromhex(VECTORS["rsa_public_der"])
    signature = bytes.fromhex(VECTORS["rsa_signature_of_test"])
    assert crypto.rsa_public_der(private) == public
    assert crypto.rsa_private_der_canonical(private) == private
    crypto.rsa_verify(public, b"test", signature)
    with pytest.raises(crypto.BadSignatureError):
        crypto.rsa_verify(public, b"tost", signature)


def test_rsa_our_keys_sign_and_verify(our_rsa_key: bytes) -> None:
    public = crypto.rsa_public_der(our_rsa_key)
    signature = crypto.rsa_sign(our_rsa_key, b"hello")
    assert len(signature) == 256
    crypto.rsa_verify(public, b"hello", signature)
    with pytest.raises(crypto.BadSignatureError):
        crypto.rsa_verify(public, b"hello", signature[:-1] + bytes([signature[-1] ^ 1]))
    # The real Tahoe's key signs too: its signature over our data verifies with its key.
    real = bytes.fromhex(VECTORS["rsa_private_der"])
    crypto.rsa_verify(crypto.rsa_public_der(real), b"x", crypto.rsa_sign(real, b"x"))


def test_rsa_rejects_malformed_keys(our_rsa_key: bytes) -> None:
    with pytest.raises(crypto.KeyFormatError, match="DER"):
        crypto.rsa_sign(b"not a key", b"data")
    with pytest.raises(crypto.KeyFormatError, match="private key is needed"):
        crypto.rsa_sign(crypto.rsa_public_der(our_rsa_key), b"data")
    with pytest.raises(crypto.KeyFormatError):
        crypto.rsa_verify(b"garbage", b"data", b"sig")


PRIV = b"priv-v0-lqcj746bqa4npkb6zpyc6esd74x3bl6mbcjgqend7cvtgmcpawhq"
PUB = b"pub-v0-yzpqin3of3ep363lwzxwpvgai3ps43dao46k2jds5kw5ohhpcwhq"
SIG_OF_TEST = (
    "de0ed6e2f5035d38fea731adb4670311818b08ff7af44ba0862069657221e8e5"
    "232a9d8c0b4902d9300e37be57bfa3fec11cf52be929a3dec9c673c990f77808"
)


def test_ed25519_vectors() -> None:
    seed = crypto.ed25519_private_from_string(PRIV)
    public = crypto.ed25519_public_from_private(seed)
    assert crypto.ed25519_public_to_string(public) == PUB
    assert crypto.ed25519_private_to_string(seed) == PRIV
    assert crypto.ed25519_public_from_string(PUB) == public
    assert crypto.ed25519_sign(seed, b"test").hex() == SIG_OF_TEST
    crypto.ed25519_verify(public, b"test", bytes.fromhex(SIG_OF_TEST))
    with pytest.raises(crypto.BadSignatureError):
        crypto.ed25519_verify(public, b"tesT", bytes.fromhex(SIG_OF_TEST))


def test_ed25519_generate_round_trips() -> None:
    seed = crypto.ed25519_generate()
    public = crypto.ed25519_public_from_private(seed)
    text = crypto.ed25519_private_to_string(seed)
    assert crypto.ed25519_private_from_string(text.decode()) == seed
    crypto.ed25519_verify(public, b"m", crypto.ed25519_sign(seed, b"m"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"pub-v1-abc", "must start with"),
        (b"pub-v0-B0GUS", "not valid base32"),
        (b"pub-v0-aaaa", "32 bytes"),
    ],
)
def test_ed25519_rejects_malformed_strings(text: bytes, message: str) -> None:
    with pytest.raises(crypto.KeyFormatError, match=message):
        crypto.ed25519_public_from_string(text)


def test_ed25519_rejects_malformed_private_strings() -> None:
    with pytest.raises(crypto.KeyFormatError, match="must start with"):
        crypto.ed25519_private_from_string(PUB)


INTEROP = json.loads((Path(__file__).parent / "data" / "crypto_interop_vectors.json").read_text())
MESSAGE = INTEROP["message"].encode()


def test_ed25519_key_and_signature_made_by_real_tahoe() -> None:
    seed = crypto.ed25519_private_from_string(INTEROP["ed25519_private_string"].encode())
    public = crypto.ed25519_public_from_string(INTEROP["ed25519_public_string"].encode())
    assert crypto.ed25519_public_from_private(seed) == public
    assert crypto.ed25519_private_to_string(seed).decode() == INTEROP["ed25519_private_string"]
    signature = bytes.fromhex(INTEROP["ed25519_signature"])
    crypto.ed25519_verify(public, MESSAGE, signature)
    # Ed25519 is deterministic, so our signature is byte-identical to Tahoe's.
    assert crypto.ed25519_sign(seed, MESSAGE) == signature
    with pytest.raises(crypto.BadSignatureError):
        crypto.ed25519_verify(public, MESSAGE, signature[:-1] + bytes([signature[-1] ^ 0x80]))
    with pytest.raises(crypto.BadSignatureError):
        crypto.ed25519_verify(public, MESSAGE, signature[:40])


def test_legacy_pycryptopp_rsa_key_from_tahoe() -> None:
    # Public exponent 17, as pycryptopp made keys for mutable files before Tahoe 1.15.
    private = bytes.fromhex(INTEROP["rsa_legacy_private_der"])
    public = bytes.fromhex(INTEROP["rsa_legacy_public_der"])
    assert len(public) == 292  # not 294: the exponent takes one byte
    assert crypto.rsa_public_der(private) == public
    assert crypto.rsa_private_der_canonical(private).hex() == INTEROP["rsa_legacy_private_der_as_tahoe_writes_it"]
    crypto.rsa_verify(public, b"test", bytes.fromhex(INTEROP["rsa_legacy_signature_of_test"]))
    crypto.rsa_verify(public, MESSAGE, crypto.rsa_sign(private, MESSAGE))


def test_rsa_key_and_signature_made_by_lafs_were_accepted_by_real_tahoe() -> None:
    private = bytes.fromhex(INTEROP["lafs_rsa_private_der"])
    public = bytes.fromhex(INTEROP["lafs_rsa_public_der"])
    assert len(public) == 294
    assert crypto.rsa_public_der(private) == public
    assert crypto.rsa_private_der_canonical(private) == private
    crypto.rsa_verify(public, MESSAGE, bytes.fromhex(INTEROP["lafs_rsa_signature"]))


def test_rsa_only_2048_bit_private_keys_like_tahoe() -> None:
    assert INTEROP["rsa_1024_tahoe_error"] == "Private Key must be 2048 bits"
    with pytest.raises(crypto.KeyFormatError, match="2048-bit"):
        crypto.rsa_sign(bytes.fromhex(INTEROP["rsa_1024_private_der"]), b"data")
    with pytest.raises(crypto.KeyFormatError, match="2048-bit"):
        crypto.rsa_public_der(bytes.fromhex(INTEROP["rsa_1024_private_der"]))


def test_rsa_accepts_der_only(our_rsa_key: bytes) -> None:
    from Crypto.PublicKey import RSA

    pem = RSA.import_key(our_rsa_key).export_key(format="PEM")
    with pytest.raises(crypto.KeyFormatError, match="DER"):
        crypto.rsa_sign(pem, b"data")
    with pytest.raises(crypto.KeyFormatError, match="private key was given where a public key"):
        crypto.rsa_verify(our_rsa_key, b"data", b"\x00" * 256)
    # A PKCS#1 ("traditional") DER private key loads, as in Tahoe, and is written back as PKCS#8.
    pkcs1 = RSA.import_key(our_rsa_key).export_key(format="DER", pkcs=1)
    assert pkcs1 != our_rsa_key
    assert crypto.rsa_private_der_canonical(pkcs1) == our_rsa_key


def test_rsa_bad_signatures(our_rsa_key: bytes) -> None:
    public = crypto.rsa_public_der(our_rsa_key)
    for bad in (b"", b"\x00" * 256, b"\x01" * 255, b"\x01" * 257, crypto.rsa_sign(our_rsa_key, b"other")):
        with pytest.raises(crypto.BadSignatureError):
            crypto.rsa_verify(public, b"data", bad)


@given(st.binary(max_size=64))
def test_rsa_garbage_keys_raise_key_format_error(garbage: bytes) -> None:
    with pytest.raises(crypto.KeyFormatError):
        crypto.rsa_verify(b"\x30" + garbage, b"data", b"\x00" * 256)
    with pytest.raises(crypto.KeyFormatError):
        crypto.rsa_sign(garbage, b"data")


@given(st.one_of(st.binary(max_size=80), st.text(max_size=80)))
def test_ed25519_garbage_strings_raise_key_format_error(garbage: bytes | str) -> None:
    for parse in (crypto.ed25519_private_from_string, crypto.ed25519_public_from_string):
        try:
            key = parse(garbage)
        except crypto.KeyFormatError:
            continue
        assert len(key) == 32


def test_aes256_with_iv_matches_real_tahoe_from_any_offset() -> None:
    key = bytes.fromhex(INTEROP["aes256_key"])
    iv = bytes.fromhex(INTEROP["aes256_iv"])
    expected = bytes.fromhex(INTEROP["aes256_ciphertext_of_zeros_100"])
    zeros = b"\x00" * 100
    for offset in (0, 1, 16, 31, 32, 33, 99):
        assert crypto.aes_ctr(key, zeros[offset:], offset=offset, iv=iv) == expected[offset:]
    stream = crypto.AESCTRStream(key, offset=5, initial_counter=int.from_bytes(iv, "big"))
    assert stream.process(zeros[5:40]) + stream.process(zeros[40:]) == expected[5:]
    assert stream.offset == 100
    with pytest.raises(ValueError, match="negative"):
        crypto.AESCTRStream(key, offset=-1)
