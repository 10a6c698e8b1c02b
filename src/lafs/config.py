"""A node's configuration: ``tahoe.cfg`` and the files under ``private/``, validated like Tahoe 1.20.

Every error names the file, and where it applies the section and key, so an
operator can fix it without reading code.
"""

from __future__ import annotations

import calendar
import configparser
import datetime
import enum
import os
import re
from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from lafs.core.errors import LafsError
from lafs.core.params import DEFAULT_MAX_SEGMENT_SIZE, EncodingParameters
from lafs.core.sizes import SizeError, parse_abbreviated_size

CONFIG_FILE = "tahoe.cfg"

# Sections and keys Tahoe-LAFS 1.20 knows (facts brief §10.1).
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "node": frozenset(
        {
            "nickname", "web.port", "web.static", "tub.port", "tub.location", "log_gatherer.furl",
            "timeout.keepalive", "timeout.disconnect", "tempdir", "reveal-IP-address", "ssh.port",
            "ssh.authorized_keys_file", "http_proxy", "web.reveal_storage_furls", "tub.tor", "tub.i2p",
        }
    ),
    "client": frozenset(
        {
            "introducer.furl", "helper.furl", "shares.needed", "shares.happy", "shares.total",
            "mutable.format", "peers.preferred", "force_foolscap", "storage.plugins",
            "shares._max_immutable_segment_size_for_testing",
            # lafs's own (beyond Tahoe): automatic maintenance, docs/maintenance.md.
            "maintenance.targets", "maintenance.interval", "maintenance.concurrency", "maintenance.pause",
        }
    ),
    "storage": frozenset(
        {
            "enabled", "anonymous", "readonly", "reserved_space", "storage_dir", "expire.enabled",
            "expire.mode", "expire.override_lease_duration", "expire.cutoff_date", "expire.immutable",
            "expire.mutable", "force_foolscap", "plugins", "grid_management", "debug_discard",
        }
    ),
    "helper": frozenset({"enabled"}),
    "connections": frozenset({"tcp", "tor", "i2p"}),
    "tor": frozenset(
        {
            "enabled", "socks.port", "control.port", "launch", "tor.executable", "onion",
            "onion.local_port", "onion.external_port", "onion.private_key_file",
        }
    ),
    "i2p": frozenset(
        {"enabled", "sam.port", "launch", "i2p.configdir", "i2p.executable", "dest", "dest.port", "dest.private_key_file"}
    ),
    "sftpd": frozenset({"enabled", "port", "host_pubkey_file", "host_privkey_file", "accounts.file", "accounts.url"}),
    "ftpd": frozenset({"enabled", "port", "accounts.file", "accounts.url"}),
}
# Sections whose keys are free-form (plugin configuration, grid managers).
DYNAMIC_SECTIONS = re.compile(r"\A(storageserver\.plugins\.|storageclient\.plugins\.)|\A(grid_managers|grid_manager_certificates)\Z")

_BOOLEANS = {"1": True, "yes": True, "true": True, "on": True, "0": False, "no": False, "false": False, "off": False}


class ConfigError(LafsError):
    """A configuration file or value that cannot be used."""


@attrs.frozen
class NodeSettings:
    """``[node]``, parsed."""

    nickname: str
    web_port: str | None
    """None when the node has no web gateway."""
    tub_port: str | None
    tub_location: str
    keepalive_timeout: int
    disconnect_timeout: int


@attrs.frozen
class ClientSettings:
    """``[client]``, parsed."""

    encoding: EncodingParameters
    preferred_peers: tuple[str, ...]
    mutable_format: str
    """``"sdmf"`` or ``"mdmf"``: what new mutable files and directories are made with."""
    force_foolscap: bool
    maintenance: MaintenanceSettings | None = None
    """None unless ``[client]maintenance.targets`` names something to keep alive."""


@attrs.frozen
class MaintenanceSettings:
    """``[client]maintenance.*`` (lafs's own, docs/maintenance.md): what to deep-check, repair and
    renew leases on, how often, and how gently."""

    targets: tuple[str, ...]
    """Aliases (``tahoe:``) and directory or file caps, in the order given."""
    interval: int
    """Seconds from the start of one run to the start of the next."""
    concurrency: int = 2
    """Objects of one directory worked on at once."""
    pause: float = 0.0
    """Seconds to wait before working on each object (0: no pause)."""


class ExpirationMode(enum.Enum):
    """How the lease checker decides that a lease has expired (``[storage]expire.mode``)."""

    AGE = "age"
    """Renewal time plus the lease's duration (or ``expire.override_lease_duration``) is past."""
    CUTOFF_DATE = "cutoff-date"
    """The lease was last renewed before ``expire.cutoff_date``."""


@attrs.frozen
class ExpirationSettings:
    """``[storage]expire.*``, parsed.  Expiration is off unless ``enabled``; the lease checker
    still walks every share and reports what it would remove."""

    enabled: bool = False
    mode: ExpirationMode = ExpirationMode.AGE
    override_lease_duration: int | None = None
    """Seconds; None: each lease's own duration."""
    cutoff_date: int | None = None
    """POSIX seconds of midnight UTC at the start of the cutoff day; set exactly in cutoff-date mode."""
    immutable: bool = True
    mutable: bool = True

    def __attrs_post_init__(self) -> None:
        if (self.mode is ExpirationMode.CUTOFF_DATE) != (self.cutoff_date is not None):
            raise ValueError("a cutoff date goes with cutoff-date mode, and only with it")


@attrs.frozen
class StorageSettings:
    """``[storage]``, parsed."""

    enabled: bool
    storage_dir: str
    reserved_space: int
    readonly: bool
    discard_storage: bool
    force_foolscap: bool = False
    """Serve storage over Foolscap only: no HTTPS on the Tub port, no NURLs announced."""
    expiration: ExpirationSettings = ExpirationSettings()


_DAY = 24 * 60 * 60
# The units Tahoe's duration strings take; a month is 31 days and a year 365, as in Tahoe.
_DURATION_UNITS = (("day", _DAY), ("month", 31 * _DAY), ("mo", 31 * _DAY), ("year", 365 * _DAY))
_CUTOFF_DATE = re.compile(r"\A([0-9]{4})-([0-9]{2})-([0-9]{2})\Z")


# lafs's own intervals (maintenance.*) take shorter units as well; longest names first.
_INTERVAL_UNITS = (
    ("second", 1), ("sec", 1), ("minute", 60), ("min", 60), ("hour", 3600), ("week", 7 * _DAY), *_DURATION_UNITS
)


def _parse_units(text: str, units: tuple[tuple[str, int], ...], example: str) -> int:
    stripped = text.strip()
    body = stripped[:-1] if stripped.endswith("s") else stripped
    for unit, seconds in sorted(units, key=lambda u: -len(u[0])):
        if body.endswith(unit):
            number = body[: -len(unit)].strip()
            if not number.isdigit():
                raise ValueError(f"{text!r} must start with a whole number of {unit}s (like {example!r})")
            return int(number) * seconds
    names = ", ".join(dict.fromkeys(unit for unit, _ in units))
    raise ValueError(f"{text!r} has no unit: use one of {names} (an 's' may follow), like {example!r}")


def parse_duration(text: str) -> int:
    """Seconds in a duration string like ``7days``, ``31day``, ``60 days``, ``2mo``, ``3 month``,
    ``2years``: a whole number, optional spaces, a unit (day, month, mo, year; an ``s`` may
    follow).  Units are lower case, as in Tahoe.  ValueError names what is wrong."""
    return _parse_units(text, _DURATION_UNITS, "60 days")


def parse_interval(text: str) -> int:
    """Like `parse_duration` (the units Tahoe takes) plus second/sec, minute/min, hour and week:
    ``12 hours``, ``1 day``, ``90 minutes``.  For lafs's own settings, so Tahoe's stay as strict as Tahoe."""
    return _parse_units(text, _INTERVAL_UNITS, "12 hours")


def parse_cutoff_date(text: str) -> int:
    """POSIX seconds of midnight UTC starting the day ``YYYY-MM-DD``.  ValueError names what is wrong."""
    match = _CUTOFF_DATE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a date of the form YYYY-MM-DD (like 2009-01-16)")
    try:
        day = datetime.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError as e:
        raise ValueError(f"{text!r} is not a real date: {e}") from None
    return calendar.timegm(day.timetuple())


def _cap_free(text: str) -> str:
    """A target as an error may show it: a cap's secret part left out."""
    return text[:8] + "..." if text.startswith("URI:") else text


class NodeConfig:
    """The parsed ``tahoe.cfg`` of one node directory, plus access to its private files."""

    node: NodeSettings
    client: ClientSettings
    storage: StorageSettings
    """Each section's values, parsed once by ``validate``."""

    def __init__(self, basedir: str, parser: configparser.RawConfigParser, config_path: str) -> None:
        self.basedir = os.path.abspath(basedir)
        self._parser = parser
        self.config_path = config_path

    @classmethod
    def load(cls, basedir: str) -> NodeConfig:
        """Read and validate ``BASEDIR/tahoe.cfg``."""
        path = os.path.join(os.path.abspath(basedir), CONFIG_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"{basedir} is not a node directory: {path} does not exist")
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        try:
            with open(path, encoding="utf-8-sig") as f:
                parser.read_file(f, source=path)
        except (configparser.Error, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot parse: {e}") from None
        config = cls(basedir, parser, path)
        config.validate()
        return config

    @classmethod
    def from_text(cls, basedir: str, text: str) -> NodeConfig:
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        path = os.path.join(basedir, CONFIG_FILE)
        try:
            parser.read_string(text, source=path)
        except configparser.Error as e:
            raise ConfigError(f"{path}: cannot parse: {e}") from None
        config = cls(basedir, parser, path)
        config.validate()
        return config

    def _where(self, section: str, key: str) -> str:
        return f"{self.config_path}: [{section}]{key}"

    def validate(self) -> None:
        for section in self._parser.sections():
            if DYNAMIC_SECTIONS.search(section):
                continue
            if section not in KNOWN_KEYS:
                raise ConfigError(f"{self.config_path}: unknown section [{section}]")
            for key in self._parser.options(section):
                if key.lower() not in {known.lower() for known in KNOWN_KEYS[section]}:
                    raise ConfigError(f"{self._where(section, key)}: unknown key")
                value = self._parser.get(section, key)
                if key.endswith(".furl") and "#" in value:
                    raise ConfigError(
                        f"{self._where(section, key)}: a fURL may not contain '#' (it starts a comment in tahoe.cfg)"
                    )
        # Read every typed value once, so a bad one fails at start-up.
        for section, key in [("storage", "enabled"), ("storage", "readonly"), ("helper", "enabled"),
                             ("node", "reveal-IP-address"), ("storage", "anonymous"), ("storage", "debug_discard")]:
            self.get_bool(section, key, False)
        for key in ("shares.needed", "shares.happy", "shares.total"):
            self.get_int("client", key, 1)
        needed = self.get_int("client", "shares.needed", 3)
        happy = self.get_int("client", "shares.happy", 7)
        total = self.get_int("client", "shares.total", 10)
        if not 1 <= needed <= total <= 256:
            raise ConfigError(
                f"{self.config_path}: [client]shares.needed={needed} and shares.total={total} must satisfy 1 <= k <= N <= 256"
            )
        if not 1 <= happy <= total:
            raise ConfigError(f"{self._where('client', 'shares.happy')}: must be between 1 and shares.total ({total})")
        fmt = self.get("client", "mutable.format", "sdmf").lower()
        if fmt not in ("sdmf", "mdmf"):
            raise ConfigError(f"{self._where('client', 'mutable.format')}: must be 'sdmf' or 'mdmf', not {fmt!r}")
        web_port = self.get("node", "web.port")
        self.node = NodeSettings(
            nickname=self.get("node", "nickname", "<unspecified>"),
            web_port=web_port if web_port and web_port.lower() != "none" else None,
            tub_port=self.get_optional("node", "tub.port"),
            tub_location=self.get("node", "tub.location", "AUTO"),
            keepalive_timeout=self.get_int("node", "timeout.keepalive", 0),
            disconnect_timeout=self.get_int("node", "timeout.disconnect", 0),
        )
        segment_size = self.get_int("client", "shares._max_immutable_segment_size_for_testing", DEFAULT_MAX_SEGMENT_SIZE)
        if segment_size < 1:
            raise ConfigError(f"{self._where('client', 'shares._max_immutable_segment_size_for_testing')}: must be at least 1")
        self.client = ClientSettings(
            encoding=EncodingParameters(needed, happy, total, segment_size),
            preferred_peers=tuple(p.strip() for p in self.get("client", "peers.preferred").split(",") if p.strip()),
            mutable_format=fmt,
            force_foolscap=self.get_bool("client", "force_foolscap", False),
            maintenance=self._maintenance_settings(),
        )
        self.storage = StorageSettings(
            enabled=self.get_bool("storage", "enabled", True),
            storage_dir=os.path.expanduser(self.get("storage", "storage_dir") or self.path("storage")),
            reserved_space=self.get_size("storage", "reserved_space", 0),
            readonly=self.get_bool("storage", "readonly", False),
            discard_storage=self.get_bool("storage", "debug_discard", False),
            force_foolscap=self.get_bool("storage", "force_foolscap", False),
            expiration=self._expiration_settings(),
        )

    def _maintenance_settings(self) -> MaintenanceSettings | None:
        """``[client]maintenance.*``: off (None) without targets; with targets an interval is required."""
        targets_text = self.get_optional("client", "maintenance.targets")
        targets = tuple(t.strip() for t in (targets_text or "").split(",") if t.strip())
        others = [key for key in ("maintenance.interval", "maintenance.concurrency", "maintenance.pause")
                  if self.has("client", key)]
        if not targets:
            if others:
                raise ConfigError(
                    f"{self._where('client', others[0])}: set, but [client]maintenance.targets names nothing to "
                    "maintain (aliases like 'tahoe:' or caps, comma-separated)"
                )
            return None
        for target in targets:
            if not target.startswith("URI:") and not (target.endswith(":") and ":" not in target[:-1] and target[:-1]):
                raise ConfigError(
                    f"{self._where('client', 'maintenance.targets')}: {_cap_free(target)!r} is neither an alias "
                    "('tahoe:', with its colon) nor a cap (URI:...)"
                )
        interval_text = self.get_optional("client", "maintenance.interval")
        if not interval_text:
            raise ConfigError(
                f"{self._where('client', 'maintenance.interval')}: missing; with maintenance.targets set it says "
                "how often to run, like '1 day' or '12 hours'"
            )
        try:
            interval = parse_interval(interval_text)
        except ValueError as e:
            raise ConfigError(f"{self._where('client', 'maintenance.interval')}: {e}") from None
        if interval < 60:
            raise ConfigError(f"{self._where('client', 'maintenance.interval')}: {interval_text!r} is shorter than a minute")
        concurrency = self.get_int("client", "maintenance.concurrency", 2)
        if not 1 <= concurrency <= 100:
            raise ConfigError(f"{self._where('client', 'maintenance.concurrency')}: must be between 1 and 100")
        pause = 0.0
        pause_text = self.get_optional("client", "maintenance.pause")
        if pause_text:
            try:
                pause = float(pause_text)
            except ValueError:
                raise ConfigError(
                    f"{self._where('client', 'maintenance.pause')}: {pause_text!r} is not a number of seconds (like 0.5)"
                ) from None
            if not 0 <= pause <= 3600:
                raise ConfigError(f"{self._where('client', 'maintenance.pause')}: must be between 0 and 3600 seconds")
        return MaintenanceSettings(targets=targets, interval=interval, concurrency=concurrency, pause=pause)

    def _expiration_settings(self) -> ExpirationSettings:
        """``[storage]expire.*`` checked as Tahoe 1.20 checks them (observed on the real program):
        the mode and a given override duration are checked even with expiration off; the mode
        is required only when expiration is on; cutoff-date mode always needs a cutoff date, and
        the date is read only in that mode.  Stricter than Tahoe in two places, both on
        purpose: a negative override duration (Tahoe takes "-1 days" and so expires every
        lease) and a cutoff date with more than ``YYYY-MM-DD`` in it are refused."""
        enabled = self.get_bool("storage", "expire.enabled", False)
        mode_text = self.get_optional("storage", "expire.mode")
        if mode_text is None and enabled:
            raise ConfigError(
                f"{self._where('storage', 'expire.mode')}: missing; with expire.enabled = true it must be "
                "'age' or 'cutoff-date'"
            )
        try:
            mode = ExpirationMode(mode_text if mode_text is not None else "age")
        except ValueError:
            raise ConfigError(
                f"{self._where('storage', 'expire.mode')}: {mode_text!r} must be 'age' or 'cutoff-date'"
            ) from None
        override = None
        override_text = self.get_optional("storage", "expire.override_lease_duration")
        if override_text is not None:
            try:
                override = parse_duration(override_text)
            except ValueError as e:
                raise ConfigError(f"{self._where('storage', 'expire.override_lease_duration')}: {e}") from None
        cutoff = None
        if mode is ExpirationMode.CUTOFF_DATE:
            cutoff_text = self.get_optional("storage", "expire.cutoff_date")
            if cutoff_text is None:
                raise ConfigError(
                    f"{self._where('storage', 'expire.cutoff_date')}: missing; expire.mode = cutoff-date needs a "
                    "date like 2009-01-16"
                )
            try:
                cutoff = parse_cutoff_date(cutoff_text)
            except ValueError as e:
                raise ConfigError(f"{self._where('storage', 'expire.cutoff_date')}: {e}") from None
        return ExpirationSettings(
            enabled=enabled,
            mode=mode,
            override_lease_duration=override,
            cutoff_date=cutoff,
            immutable=self.get_bool("storage", "expire.immutable", True),
            mutable=self.get_bool("storage", "expire.mutable", True),
        )

    # --- values ---------------------------------------------------------------------------

    def has(self, section: str, key: str) -> bool:
        return self._parser.has_option(section, key)

    def get(self, section: str, key: str, default: str = "") -> str:
        if self._parser.has_option(section, key):
            return self._parser.get(section, key).strip()
        return default

    def get_optional(self, section: str, key: str) -> str | None:
        if self._parser.has_option(section, key):
            return self._parser.get(section, key).strip()
        return None

    def get_bool(self, section: str, key: str, default: bool) -> bool:
        value = self.get_optional(section, key)
        if value is None or value == "":
            return default
        try:
            return _BOOLEANS[value.lower()]
        except KeyError:
            raise ConfigError(f"{self._where(section, key)}: {value!r} is not a boolean (use true or false)") from None

    def get_int(self, section: str, key: str, default: int) -> int:
        value = self.get_optional(section, key)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{self._where(section, key)}: {value!r} is not a whole number") from None

    def get_size(self, section: str, key: str, default: int) -> int:
        value = self.get_optional(section, key)
        if value is None or value == "":
            return default
        try:
            return parse_abbreviated_size(value)
        except SizeError as e:
            raise ConfigError(f"{self._where(section, key)}: {e}") from None

    @property
    def nickname(self) -> str:
        return self.node.nickname

    # --- files ----------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        return os.path.join(self.basedir, *parts)

    def private_path(self, name: str) -> str:
        return os.path.join(self.basedir, "private", name)

    def read_private(self, name: str) -> str | None:
        try:
            with open(self.private_path(name), encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def write_private(self, name: str, text: str) -> None:
        os.makedirs(self.private_path(""), mode=0o700, exist_ok=True)
        path = self.private_path(name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(path, 0o600)

    def write_file(self, name: str, text: str) -> None:
        with open(self.path(name), "w", encoding="utf-8") as f:
            f.write(text)

    def introducer_furls(self) -> dict[str, str]:
        """Petname -> fURL, from ``private/introducers.yaml`` and the deprecated ``[client]introducer.furl``."""
        furls: dict[str, str] = {}
        data = self._load_yaml("introducers.yaml")
        if data is not None:
            introducers = data.get("introducers") if isinstance(data, Mapping) else None
            if introducers is not None and not isinstance(introducers, Mapping):
                raise ConfigError(f"{self.private_path('introducers.yaml')}: 'introducers' must be a mapping")
            for petname, entry in (introducers or {}).items():
                if not isinstance(entry, Mapping) or not isinstance(entry.get("furl"), str):
                    raise ConfigError(
                        f"{self.private_path('introducers.yaml')}: introducer {petname!r} needs a 'furl' string"
                    )
                furls[str(petname)] = entry["furl"]
        legacy = self.get("client", "introducer.furl")
        if legacy:
            if "default" in furls:
                raise ConfigError(
                    f"{self.config_path}: [client]introducer.furl duplicates the 'default' introducer in introducers.yaml"
                )
            furls["default"] = legacy
        return furls

    def static_servers(self) -> dict[str, Mapping[str, Any]]:
        """The ``storage`` mapping of ``private/servers.yaml`` (server ID -> {ann: {...}})."""
        data = self._load_yaml("servers.yaml")
        if data is None:
            return {}
        storage = data.get("storage") if isinstance(data, Mapping) else None
        if storage is None:
            return {}
        if not isinstance(storage, Mapping):
            raise ConfigError(f"{self.private_path('servers.yaml')}: 'storage' must be a mapping")
        for server_id, entry in storage.items():
            ann = entry.get("ann") if isinstance(entry, Mapping) else None
            if not isinstance(ann, Mapping) or not isinstance(ann.get("anonymous-storage-FURL"), str):
                raise ConfigError(
                    f"{self.private_path('servers.yaml')}: server {server_id!r} needs ann.anonymous-storage-FURL"
                )
        return {str(k): v for k, v in storage.items()}

    def _load_yaml(self, name: str) -> Any:
        path = self.private_path(name)
        try:
            with open(path, encoding="utf-8") as f:
                return yaml.safe_load(f)
        except FileNotFoundError:
            return None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
