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
