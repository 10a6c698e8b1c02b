# mypy: disable-error-code="misc"
"""Foolscap RemoteInterfaces, with Tahoe-LAFS 1.20's wire names and schemas.

Real Tahoe peers check our calls against their copies of these schemas and we
check theirs against ours, so names, argument order and constraints must match
Tahoe's exactly.  Interfaces without ``__remote_name__`` go by their class name
on the wire (``RIBucketWriter``, ``RIBucketReader``), as Tahoe's do.
"""

# foolscap's RemoteInterface methods are schemas, not Python methods: they take
# no self, and their defaults are constraints.

from __future__ import annotations

from foolscap.api import (
    Any,
    ChoiceOf,
    DictOf,
    IntegerConstraint,
    ListOf,
    Referenceable,
    RemoteInterface,
    SetOf,
    StringConstraint,
    TupleOf,
)

MAX_BUCKETS = 256  # zfec makes at most 256 shares per file
HASH_SIZE = 32

Hash = StringConstraint(maxLength=HASH_SIZE, minLength=HASH_SIZE)
StorageIndex = StringConstraint(16)
FURL = StringConstraint(1000)
ShareData = StringConstraint(None)
Offset = IntegerConstraint(8)  # up to 2**64
ReadSize = int  # foolscap's plain int: below 2**31
LeaseRenewSecret = Hash
LeaseCancelSecret = Hash
WriteEnablerSecret = Hash

TestVector = ListOf(TupleOf(Offset, ReadSize, bytes, bytes))
DataVector = ListOf(TupleOf(Offset, ShareData))
TestAndWriteVectorsForShares = DictOf(int, TupleOf(TestVector, DataVector, ChoiceOf(None, Offset)))
ReadVector = ListOf(TupleOf(Offset, ReadSize))
ReadData = ListOf(ShareData)


class RIBucketWriter(RemoteInterface):
    """A server-side handle for writing one immutable share while it is uploaded."""

    def write(offset=Offset, data=ShareData):
        return None

    def close():
        """Finish the share and make it visible to readers."""
        return None

    def abort():
        """Throw the partial share away."""
        return None


class RIBucketReader(RemoteInterface):
    """A server-side handle for reading one finished immutable share."""

    def read(offset=Offset, length=ReadSize):
        return ShareData

    def advise_corrupt_share(reason=bytes):
        return None


class RIStorageServer(RemoteInterface):
    __remote_name__ = "RIStorageServer.tahoe.allmydata.com"

    def get_version():
        return DictOf(bytes, Any())

    def allocate_buckets(
        storage_index=StorageIndex,
        renew_secret=LeaseRenewSecret,
        cancel_secret=LeaseCancelSecret,
        sharenums=SetOf(int, maxLength=MAX_BUCKETS),
        allocated_size=Offset,
        canary=Referenceable,
    ):
        """Return (shares already held, {shnum: RIBucketWriter} for shares to write)."""
        return TupleOf(SetOf(int, maxLength=MAX_BUCKETS), DictOf(int, RIBucketWriter, maxKeys=MAX_BUCKETS))

    def add_lease(storage_index=StorageIndex, renew_secret=LeaseRenewSecret, cancel_secret=LeaseCancelSecret):
        return Any()

    def get_buckets(storage_index=StorageIndex):
        return DictOf(int, RIBucketReader, maxKeys=MAX_BUCKETS)

    def slot_readv(storage_index=StorageIndex, shares=ListOf(int), readv=ReadVector):
        """Read from mutable shares; an empty ``shares`` list means every share."""
        return DictOf(int, ReadData)

    def slot_testv_and_readv_and_writev(
        storage_index=StorageIndex,
        secrets=TupleOf(WriteEnablerSecret, LeaseRenewSecret, LeaseCancelSecret),
        tw_vectors=TestAndWriteVectorsForShares,
        r_vector=ReadVector,
    ):
        return TupleOf(bool, DictOf(int, ReadData))

    def advise_corrupt_share(share_type=bytes, storage_index=StorageIndex, shnum=int, reason=bytes):
        return Any()


# An announcement is the (msg, sig, key) triple; Tahoe leaves it unconstrained.
Announcement_v2 = Any()
SubscriberInfo = DictOf(bytes, Any())


class RIIntroducerSubscriberClient_v2(RemoteInterface):
    __remote_name__ = "RIIntroducerSubscriberClient_v2.tahoe.allmydata.com"

    def announce_v2(announcements=SetOf(Announcement_v2)):
        return None


class RIIntroducerPublisherAndSubscriberService_v2(RemoteInterface):
    __remote_name__ = "RIIntroducerPublisherAndSubscriberService_v2.tahoe.allmydata.com"

    def get_version():
        return DictOf(bytes, Any())

    def publish_v2(announcement=Announcement_v2, canary=Referenceable):
        return None

    def subscribe_v2(
        subscriber=RIIntroducerSubscriberClient_v2,
        service_name=bytes,
        subscriber_info=SubscriberInfo,
    ):
        return None
