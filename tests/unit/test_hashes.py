"""Tagged hashes against Tahoe-LAFS 1.20's own known answers (facts brief 13.2, 13.4)."""

import hashlib

import pytest

from lafs.core import hashes as h
from lafs.core.base32 import a2b, b2a

VECTORS = [
    (lambda: h.tagged_hash(b"tag", b"hello world"), "yra322btzoqjp4ts2jon5dztgnilcdg6jgztgk7joi6qpjkitg2q"),
    (lambda: h.tagged_hash(b"different", b"hello world"), "kfbsfssrv2bvtp3regne6j7gpdjcdjwncewriyfdtt764o5oa7ta"),
    (lambda: h.tagged_hash(b"different", b"goodbye world"), "z34pzkgo36chbjz2qykonlxthc4zdqqquapw4bcaoogzvmmcr3zq"),
    (lambda: h.tagged_pair_hash(b"tag", b"hello", b"world"), "wmto44q3shtezwggku2fxztfkwibvznkfu6clatnvfog527sb6dq"),
    (lambda: h.tagged_pair_hash(b"different", b"hello", b"world"), "lzn27njx246jhijpendqrxlk4yb23nznbcrihommbymg5e7quh4a"),
    (lambda: h.tagged_pair_hash(b"different", b"goodbye", b"world"), "qnehpoypxxdhjheqq7dayloghtu42yr55uylc776zt23ii73o3oq"),
    (lambda: h.storage_index_hash(b""), "qb5igbhcc5esa6lwqorsy7e6am"),
    (lambda: h.storage_index_hash(b"x" * 16), "wvggbrnrezdpa5yayrgiw5nzja"),
    (lambda: h.storage_index_hash(a2b("2ckv3dfzh6rgjis6ogfqhyxnzy")), "aarbseqqrpsfowduchcjbonscq"),
    (lambda: h.block_hash(b""), "msjr5bh4evuh7fa3zw7uovixfbvlnstr5b65mrerwfnvjxig2jvq"),
    (lambda: h.uri_extension_hash(b""), "wthsu45q7zewac2mnivoaa4ulh5xvbzdmsbuyztq2a5fzxdrnkka"),
    (lambda: h.plaintext_hash(b""), "5lz5hwz3qj3af7n6e3arblw7xzutvnd3p3fjsngqjcb7utf3x3da"),
    (lambda: h.crypttext_hash(b""), "itdj6e4njtkoiavlrmxkvpreosscssklunhwtvxn6ggho4rkqwga"),
    (lambda: h.crypttext_segment_hash(b""), "aovy5aa7jej6ym5ikgwyoi4pxawnoj3wtaludjz7e2nb5xijb7aa"),
    (lambda: h.plaintext_segment_hash(b""), "4fdgf6qruaisyukhqcmoth4t3li6bkolbxvjy4awwcpprdtva7za"),
    (lambda: h.convergence_hash(3, 10, 100, b"", b"converge"), "3mo6ni7xweplycin6nowynw2we"),
    (lambda: h.my_renewal_secret_hash(b""), "ujhr5k5f7ypkp67jkpx6jl4p47pyta7hu5m527cpcgvkafsefm6q"),
    (lambda: h.my_cancel_secret_hash(b""), "rjwzmafe2duixvqy6h47f5wfrokdziry6zhx4smew4cj6iocsfaa"),
    (lambda: h.file_renewal_secret_hash(b"", b"si"), "hzshk2kf33gzbd5n3a6eszkf6q6o6kixmnag25pniusyaulqjnia"),
    (lambda: h.file_cancel_secret_hash(b"", b"si"), "bfciwvr6w7wcavsngxzxsxxaszj72dej54n4tu2idzp6b74g255q"),
    (lambda: h.bucket_renewal_secret_hash(b"", b"\0" * 20), "e7imrzgzaoashsncacvy3oysdd2m5yvtooo4gmj4mjlopsazmvuq"),
    (lambda: h.bucket_cancel_secret_hash(b"", b"\0" * 20), "dvdujeyxeirj6uux6g7xcf4lvesk632aulwkzjar7srildvtqwma"),
    (lambda: h.hmac(b"tag", b""), "c54ypfi6pevb3nvo6ba42jtglpkry2kbdopqsi7dgrm4r7tw5sra"),
    (lambda: h.mutable_rwcap_key_hash(b"iv", b"wk"), "6rvn2iqrghii5n4jbbwwqqsnqu"),
    (lambda: h.ssk_writekey_hash(b""), "ykpgmdbpgbb6yqz5oluw2q26ye"),
    (lambda: h.ssk_write_enabler_master_hash(b""), "izbfbfkoait4dummruol3gy2bnixrrrslgye6ycmkuyujnenzpia"),
    (lambda: h.ssk_write_enabler_hash(b"wk", b"\0" * 20), "fuu2dvx7g6gqu5x22vfhtyed7p4pd47y5hgxbqzgrlyvxoev62tq"),
    (lambda: h.ssk_pubkey_fingerprint_hash(b""), "3opzw4hhm2sgncjx224qmt5ipqgagn7h5zivnfzqycvgqgmgz35q"),
    (lambda: h.ssk_readkey_hash(b""), "vugid4as6qbqgeq2xczvvcedai"),
    (lambda: h.ssk_readkey_data_hash(b"iv", b"rk"), "73wsaldnvdzqaf7v4pzbr2ae5a"),
    (lambda: h.ssk_storage_index_hash(b""), "j7icz6kigb6hxrej3tv4z7ayym"),
    (lambda: h.permute_server_hash(b"SI", a2b("u33m4y7klhz3bypswqkozwetvabelhxt")), "kb4354zeeurpo3ze5e275wzbynm6hlap"),
]


@pytest.mark.parametrize("index", range(len(VECTORS)))
def test_known_answer(index: int) -> None:
    """Each tagged hash gives the value Tahoe-LAFS 1.20's test suite expects."""
    compute, expected = VECTORS[index]
    assert b2a(compute()) == expected


def test_convergence_tag_layout() -> None:
    """The convergence tag embeds the secret and 'k,N,segsize' as netstrings."""
    expected = b"allmydata_immutable_content_to_key_with_added_secret_v1+16:" + b"\x42" * 16 + b",9:3,10,1024,"
    assert h.convergence_tag(3, 10, 1024, b"\x42" * 16) == expected


@pytest.mark.parametrize("k,n", [(0, 3), (4, 3), (3, 257)])
def test_convergence_rejects_bad_parameters(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="must satisfy"):
        h.convergence_tag(k, n, 1024, b"")


def test_incremental_hasher_matches_one_shot() -> None:
    hasher = h.convergence_hasher(3, 10, 100, b"converge")
    for piece in (b"abc", b"", b"defg" * 100):
        hasher.update(piece)
    assert hasher.digest() == h.convergence_hash(3, 10, 100, b"abc" + b"defg" * 100, b"converge")


RENEWAL_VECTORS = [
    ("boity2cdh7jvl3ltaeebuiobbspjmbuopnwbde2yeh4k6x7jioga", "vrttmwlicrzbt7gh5qsooogr7u", "v67jiisoty6ooyxlql5fuucitqiok2ic", "osd6wmc5vz4g3ukg64sitmzlfiaaordutrez7oxdp5kkze7zp5zq"),
    ("boity2cdh7jvl3ltaeebuiobbspjmbuopnwbde2yeh4k6x7jioga", "75gmmfts772ww4beiewc234o5e", "v67jiisoty6ooyxlql5fuucitqiok2ic", "35itmusj7qm2pfimh62snbyxp3imreofhx4djr7i2fweta75szda"),
    ("boity2cdh7jvl3ltaeebuiobbspjmbuopnwbde2yeh4k6x7jioga", "75gmmfts772ww4beiewc234o5e", "lh5fhobkjrmkqjmkxhy3yaonoociggpz", "srrlruge47ws3lm53vgdxprgqb6bz7cdblnuovdgtfkqrygrjm4q"),
    ("vacviff4xfqxsbp64tdr3frg3xnkcsuwt5jpyat2qxcm44bwu75a", "75gmmfts772ww4beiewc234o5e", "lh5fhobkjrmkqjmkxhy3yaonoociggpz", "b4jledjiqjqekbm2erekzqumqzblegxi23i5ojva7g7xmqqnl5pq"),
]


def _renewal(lease_secret: bytes, si: bytes, tubid: bytes) -> bytes:
    client = h.my_renewal_secret_hash(lease_secret)
    return h.bucket_renewal_secret_hash(h.file_renewal_secret_hash(client, si), tubid)


@pytest.mark.parametrize("secret,si,tubid,expected", RENEWAL_VECTORS)
def test_lease_renewal_secret_derivation(secret: str, si: str, tubid: str, expected: str) -> None:
    """Per-server lease renewal secrets follow docs/specifications/derive_renewal_secret.py."""
    assert b2a(_renewal(a2b(secret), a2b(si), a2b(tubid))) == expected


def test_lease_renewal_secret_raw_inputs() -> None:
    got = _renewal(b"lease secret" + b"x" * 20, b"storage indexxxx", b"tub idxxxxxxxxxxxxxx")
    assert b2a(got) == "fo3okyiliocn5p25agoljcoieychxim3vp4wa6am263fc7w5xgwq"


def test_hashed_lease_secret_is_blake2b() -> None:
    assert h.hashed_lease_secret(b"s" * 32) == hashlib.blake2b(b"s" * 32, digest_size=32).digest()
