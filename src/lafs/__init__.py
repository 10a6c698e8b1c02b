"""lafs: a from-scratch implementation of Tahoe-LAFS, compatible with Tahoe-LAFS 1.20."""

__version__ = "0.1.0"

# What we announce on the wire.  Real Tahoe clients read these strings, and the
# storage and introducer protocols are those of 1.20, so we present ourselves
# as a 1.20-compatible implementation while naming ourselves honestly.
TAHOE_COMPAT_VERSION = "1.20.0"
APPLICATION_VERSION = f"tahoe-lafs/{TAHOE_COMPAT_VERSION}"
FULL_VERSION = f"lafs {__version__} (compatible with tahoe-lafs {TAHOE_COMPAT_VERSION})"
