"""Cap parsing, serialising and attenuation (facts brief §3, §13.1, §13.6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import base32, caps, hashes

CHK_1234 = "URI:CHK:aeaqcaibaeaqcaibaeaqcaibae:nf3nimquen7aeqm36ekgxomalstenpkvsdmf6fplj7swdatbv5oa:3:10:1234"
MDMF_VECTOR = "URI:MDMF:mnsqs7br4xbc6ghtpfl5ewzjzm:jlens2myp4td3bcjogvs5gl5cbvnxl3fycfwqyi5qqxp6ddk7etq"
KEY = "mnsqs7br4xbc6ghtpfl5ewzjzm"
FP = "jlens2myp4td3bcjogvs5gl5cbvnxl3fycfwqyi5qqxp6ddk7etq"


def test_chk_vector_from_fields() -> None:
    ueb_hash = hashes.tagged_hash(b"allmydata_uri_extension_v1", b"stuff")
    cap = caps.CHKFileCap(b"\x01" * 16, ueb_hash, 3, 10, 1234)
    assert cap.to_string() == CHK_1234
    assert caps.from_string(CHK_1234) == cap


def test_chk_derivations() -> None:
    cap = caps.from_string_strict(CHK_1234)
    assert isinstance(cap, caps.CHKFileCap)
    assert cap.is_readonly() and not cap.is_mutable()
    assert cap.get_readonly() is cap
    # The storage index the real tahoe 1.20 `debug dump-cap` prints for this cap.
    assert base32.b2a(cap.get_storage_index()) == "xdjlalot2gbbkllavjv26e4xwm"
    verifier = cap.get_verify_cap()
    assert verifier.to_string() == (
        "URI:CHK-Verifier:xdjlalot2gbbkllavjv26e4xwm:nf3nimquen7aeqm36ekgxomalstenpkvsdmf6fplj7swdatbv5oa:3:10:1234"
    )
    assert caps.from_string(verifier.to_string()) == verifier
    assert verifier.get_storage_index() == cap.get_storage_index()


def test_mdmf_derivations_match_real_tahoe() -> None:
    cap = caps.from_string_strict(MDMF_VECTOR)
    assert isinstance(cap, caps.MDMFWriteCap)
    assert not cap.is_readonly() and cap.is_mutable()
    readonly = cap.get_readonly()
    # readkey and storage index as printed by the real `tahoe debug dump-cap`.
    assert readonly.to_string() == f"URI:MDMF-RO:tlw2mw6r6ocrncmxpbszsmn44q:{FP}"
    assert base32.b2a(cap.get_storage_index()) == "qelphciwqiossshck234aemx2e"
    assert cap.get_verify_cap().to_string() == f"URI:MDMF-Verifier:qelphciwqiossshck234aemx2e:{FP}"
    assert readonly.is_readonly() and readonly.is_mutable()
    assert not cap.get_verify_cap().is_mutable()


@pytest.mark.parametrize("suffix", [":I COME FROM THE FUTURE", ":ooh scary future stuff", ":spoilers!"])
@pytest.mark.parametrize("kind", ["MDMF", "MDMF-RO", "MDMF-Verifier", "DIR2-MDMF"])
def test_mdmf_extension_fields_are_ignored(kind: str, suffix: str) -> None:
    cap = caps.from_string_strict(f"URI:{kind}:{KEY}:{FP}{suffix}")
    assert cap.to_string() == f"URI:{kind}:{KEY}:{FP}"


@pytest.mark.parametrize("kind", ["SSK", "SSK-RO", "SSK-Verifier", "DIR2", "DIR2-RO", "DIR2-Verifier"])
def test_sdmf_caps_are_anchored(kind: str) -> None:
    assert caps.from_string_strict(f"URI:{kind}:{KEY}:{FP}").to_string() == f"URI:{kind}:{KEY}:{FP}"
    with pytest.raises(caps.CapError):
        caps.from_string_strict(f"URI:{kind}:{KEY}:{FP}:extra")


def test_literal_caps() -> None:
    assert caps.LiteralFileCap(b"hello").to_string() == "URI:LIT:nbswy3dp"
    assert caps.LiteralFileCap(b"").to_string() == "URI:LIT:"
    assert caps.from_string("URI:LIT:") == caps.LiteralFileCap(b"")
    directory = caps.DirectoryCap(caps.LiteralFileCap(b"data"))
    assert directory.to_string() == "URI:DIR2-LIT:mrqxiyi"
    assert caps.from_string("URI:DIR2-LIT:mrqxiyi") == directory
    lit = caps.from_string_strict("URI:LIT:nbswy3dp")
    assert lit.get_verify_cap() is None and lit.get_storage_index() is None
    assert directory.get_verify_cap() is None


def test_directory_caps_wrap_file_caps() -> None:
    dircap = caps.from_string_strict(f"URI:DIR2:{KEY}:{FP}")
    assert isinstance(dircap, caps.DirectoryCap)
    assert isinstance(dircap.file_cap, caps.SSKWriteCap)
    assert dircap.kind == "DIR2"
    assert dircap.get_readonly().to_string() == f"URI:DIR2-RO:tlw2mw6r6ocrncmxpbszsmn44q:{FP}"
    assert dircap.get_verify_cap() is not None
    assert dircap.get_verify_cap().to_string() == f"URI:DIR2-Verifier:qelphciwqiossshck234aemx2e:{FP}"
    chk_dir = caps.from_string_strict("URI:DIR2-CHK:" + CHK_1234[len("URI:CHK:") :])
    assert chk_dir.kind == "DIR2-CHK" and chk_dir.is_readonly() and not chk_dir.is_mutable()
    verifier = chk_dir.get_verify_cap()
    assert verifier is not None and verifier.to_string().startswith("URI:DIR2-CHK-Verifier:")


def test_unknown_caps_round_trip_verbatim() -> None:
    text = "I am a URI from the future. Whatever you do, don't "
    cap = caps.from_string(text)
    assert isinstance(cap, caps.UnknownCap)
    assert cap.to_string() == text
    assert caps.from_string(text.encode()).to_string() == text
    with pytest.raises(caps.CapError, match="not a cap of any kind"):
        caps.from_string_strict(text)


@pytest.mark.parametrize(
    "cap",
    [
        "URI:CHK:f5ahxa25t4qkktywz6teyfvcx4:opuioq7tj2y6idzfp6cazehtmgs5fdcebcz3cygrxyydvcozrmeq:3:10:345834",
        "URI:CHK:ihrbeov7lbvoduupd4qblysj7a:bg5agsdt62jb34hxvxmdsbza6do64f4fg5anxxod2buttbo6udzq:3:10:28733",
    ],
)
def test_known_good_caps_parse(cap: str) -> None:
    assert caps.from_string_strict(cap).to_string() == cap


def test_readonly_and_immutable_prefixes() -> None:
    ro = f"URI:SSK-RO:{KEY}:{FP}"
    assert caps.from_string_strict("ro." + ro).to_string() == ro
    assert caps.from_string_strict("imm." + CHK_1234).to_string() == CHK_1234
    assert caps.from_string_strict("ro." + CHK_1234).to_string() == CHK_1234
    with pytest.raises(caps.CapError, match="read-only prefix"):
        caps.from_string_strict(f"ro.URI:SSK:{KEY}:{FP}")
    with pytest.raises(caps.MustBeDeepImmutableError):
        caps.from_string_strict("imm." + ro)
    assert isinstance(caps.from_string(f"ro.URI:SSK:{KEY}:{FP}"), caps.UnknownCap)


def test_deep_immutable_context() -> None:
    assert caps.from_string_strict(CHK_1234, deep_immutable=True).to_string() == CHK_1234
    with pytest.raises(caps.MustBeDeepImmutableError):
        caps.from_string_strict(f"URI:SSK-RO:{KEY}:{FP}", deep_immutable=True)
    unknown = caps.from_string(f"URI:DIR2:{KEY}:{FP}", deep_immutable=True)
    assert isinstance(unknown, caps.UnknownCap) and unknown.error


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty cap"),
        ("URI:CHK:zz", "5 ':'-separated fields"),
        (CHK_1234 + ":7", "5 ':'-separated fields"),
        (CHK_1234.replace(":3:10:", ":x:10:"), "decimal number"),
        (CHK_1234.replace(":3:10:", ":11:10:"), "1 <= k <= N <= 256"),
        (CHK_1234.replace(":3:10:", ":0:10:"), "1 <= k <= N <= 256"),
        (CHK_1234.replace("aeaqcaibaeaqcaibaeaqcaibae", "aeaqcaibaeaqcaibaeaqcaiba"), "26 base32 characters"),
        (CHK_1234.replace("aeaqcaibaeaqcaibaeaqcaibae", "AEAQCAIBAEAQCAIBAEAQCAIBAE"), "not valid base32"),
        (CHK_1234.replace("aeaqcaibaeaqcaibaeaqcaibae", "aeaqcaibaeaqcaibaeaqcaibaf"), "not valid base32"),
        (f"URI:SSK:{KEY}", "2 ':'-separated fields"),
        (f"URI:SSK:{KEY}:{FP[:-1]}", "52 base32 characters"),
        ("URI:LIT:b0gus", "not valid base32"),
        (b"URI:CHK:\xff\xfe", "UTF-8"),
        ("http://example.com/", "not a cap"),
    ],
)
def test_malformed_caps_name_the_problem(text: str | bytes, message: str) -> None:
    with pytest.raises(caps.CapError, match=message):
        caps.from_string_strict(text)
    lenient = caps.from_string(text)
    assert isinstance(lenient, caps.UnknownCap)


keys = st.binary(min_size=16, max_size=16)
hash_values = st.binary(min_size=32, max_size=32)
encodings = st.integers(1, 256).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n)))


@st.composite
def any_file_cap(draw: st.DrawFn) -> caps.FileCap:
    choice = draw(st.sampled_from(["LIT", "CHK", "CHK-Verifier", "mutable"]))
    if choice == "LIT":
        return caps.LiteralFileCap(draw(st.binary(max_size=55)))
    if choice in ("CHK", "CHK-Verifier"):
        needed, total = draw(encodings)
        cls = caps.CHKFileCap if choice == "CHK" else caps.CHKFileVerifierCap
        return cls(draw(keys), draw(hash_values), needed, total, draw(st.integers(0, 2**64)))
    cls_m = draw(
        st.sampled_from(
            [caps.SSKWriteCap, caps.SSKReadCap, caps.SSKVerifierCap, caps.MDMFWriteCap, caps.MDMFReadCap, caps.MDMFVerifierCap]
        )
    )
    return cls_m(draw(keys), draw(hash_values))


@given(any_file_cap(), st.booleans())
def test_every_cap_round_trips(cap: caps.FileCap, as_directory: bool) -> None:
    subject: caps.FileCap | caps.DirectoryCap = caps.DirectoryCap(cap) if as_directory else cap
    text = subject.to_string()
    assert caps.from_string_strict(text) == subject
    assert caps.from_string(text.encode("ascii")) == subject
    readonly = subject.get_readonly()
    assert readonly.is_readonly()
    assert caps.from_string_strict(readonly.to_string()) == readonly
    verifier = subject.get_verify_cap()
    if verifier is not None:
        assert verifier.get_storage_index() == subject.get_storage_index()
        assert verifier.get_verify_cap() == verifier
        assert not verifier.is_mutable()
    assert readonly.get_storage_index() == subject.get_storage_index()


@given(st.one_of(st.text(max_size=120), st.binary(max_size=120)))
def test_garbage_raises_only_cap_error(text: str | bytes) -> None:
    try:
        caps.from_string_strict(text)
    except caps.CapError:
        pass
    assert caps.from_string(text) is not None


@given(st.sampled_from(["URI:CHK:", "URI:SSK:", "URI:MDMF-RO:", "URI:DIR2-CHK-Verifier:", "URI:LIT:", "URI:DIR2:"]), st.text(max_size=150))
def test_known_prefix_with_garbage_raises_cap_error(prefix: str, rest: str) -> None:
    try:
        cap = caps.from_string_strict(prefix + rest)
    except caps.CapError:
        return
    assert cap.to_string().startswith(prefix)
