"""On-disk share containers and lease records (facts brief §4.7, §5.6, §13.7)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lafs.core import containers as c
from lafs.core.hashes import hashed_lease_secret


def test_mutable_magics() -> None:
    assert c.MUTABLE_MAGIC_V1.hex() == "5461686f65206d757461626c6520636f6e7461696e65722076310a750944038e"
    assert c.MUTABLE_MAGIC_V2.hex() == "5461686f65206d757461626c6520636f6e7461696e65722076320ac355219925"
    assert c.MUTABLE_DATA_OFFSET == 468


def test_immutable_header() -> None:
    header = c.ImmutableContainerHeader.new(86539, 1)
    packed = header.pack()
    assert packed == b"\x00\x00\x00\x02" + (86539).to_bytes(4, "big") + b"\x00\x00\x00\x01"
    assert c.ImmutableContainerHeader.unpack(packed) == header
    assert header.data_length(12 + 86539 + 72) == 86539
    assert c.ImmutableContainerHeader.new(2**40).legacy_data_length == 2**32 - 1
    with pytest.raises(c.ContainerError, match="too short"):
        header.data_length(50)
    with pytest.raises(c.ContainerError, match="version 7"):
        c.ImmutableContainerHeader.unpack(b"\x00\x00\x00\x07" + b"\x00" * 8)
    with pytest.raises(c.ContainerError, match="truncated"):
        c.ImmutableContainerHeader.unpack(b"\x00\x00")


def test_lease_records() -> None:
    lease = c.LeaseInfo(0, b"r" * 32, b"c" * 32, 1_700_000_000)
    assert len(lease.pack_immutable()) == 72
    assert c.unpack_immutable_leases(lease.pack_immutable() * 2) == [lease, lease]
    mutable = c.LeaseInfo(1, b"r" * 32, b"c" * 32, 1_700_000_000, b"n" * 20)
    assert len(mutable.pack_mutable()) == 92
    assert c.unpack_mutable_leases(mutable.pack_mutable()) == [mutable]
    assert c.LeaseInfo.unpack_mutable(b"\x00" * 92).is_empty_slot()
    with pytest.raises(c.ContainerError):
        c.unpack_immutable_leases(b"x" * 73)


def test_secrets_are_hashed_in_version_2() -> None:
    assert c.stored_secret(2, b"s" * 32) == hashed_lease_secret(b"s" * 32)
    assert c.stored_secret(1, b"s" * 32) == b"s" * 32
    assert c.secrets_match(2, hashed_lease_secret(b"s" * 32), b"s" * 32)
    assert not c.secrets_match(2, hashed_lease_secret(b"s" * 32), b"t" * 32)


def test_mutable_header() -> None:
    header = c.MutableContainerHeader.new(b"n" * 20, b"w" * 32)
    packed = header.pack()
    assert len(packed) == 100 and packed[:32] == c.MUTABLE_MAGIC_V2
    assert c.MutableContainerHeader.unpack(packed) == header
    assert c.is_mutable_container(packed) and not c.is_mutable_container(b"\x00\x00\x00\x02" + b"\x00" * 28)
    assert header.version == 2
    with pytest.raises(c.ContainerError, match="bad magic"):
        c.MutableContainerHeader.unpack(b"x" * 100)
    with pytest.raises(c.ContainerError, match="slots 0-3"):
        c.mutable_lease_slot_offset(4)
    assert c.mutable_lease_slot_offset(3) == 100 + 3 * 92


@given(st.integers(0, 2**32 - 1), st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1))
def test_lease_round_trips(owner: int, renew: bytes, cancel: bytes, expiry: int) -> None:
    lease = c.LeaseInfo(owner, renew, cancel, expiry)
    assert c.LeaseInfo.unpack_immutable(lease.pack_immutable()) == lease
    with_node = c.LeaseInfo(owner, renew, cancel, expiry, b"\x07" * 20)
    assert c.LeaseInfo.unpack_mutable(with_node.pack_mutable()) == with_node


@given(st.binary(max_size=120))
def test_container_garbage_raises_container_error(data: bytes) -> None:
    for parse in (c.ImmutableContainerHeader.unpack, c.MutableContainerHeader.unpack):
        try:
            parse(data)
        except c.ContainerError:
            pass
