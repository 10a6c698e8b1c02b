"""``[client]maintenance.*`` (lafs's own): parsed once into MaintenanceSettings, with errors naming the key."""

from __future__ import annotations

import re

import pytest

from lafs.config import ConfigError, MaintenanceSettings, NodeConfig, parse_duration, parse_interval


def maintenance(*lines: str) -> MaintenanceSettings | None:
    text = "[client]\n" + "".join(line + "\n" for line in lines)
    return NodeConfig.from_text("/node", text).client.maintenance


def refused(*lines: str) -> str:
    with pytest.raises(ConfigError) as e:
        maintenance(*lines)
    return str(e.value)


def test_maintenance_is_off_unless_targets_are_named() -> None:
    assert maintenance() is None
    assert maintenance("maintenance.targets =") is None


def test_targets_interval_and_rate_limits_are_parsed() -> None:
    settings = maintenance(
        "maintenance.targets = tahoe:, URI:DIR2:abc:def ,work:",
        "maintenance.interval = 12 hours",
        "maintenance.concurrency = 4",
        "maintenance.pause = 0.5",
    )
    assert settings == MaintenanceSettings(
        targets=("tahoe:", "URI:DIR2:abc:def", "work:"), interval=12 * 3600, concurrency=4, pause=0.5
    )
    defaults = maintenance("maintenance.targets = tahoe:", "maintenance.interval = 1 day")
    assert defaults is not None and (defaults.interval, defaults.concurrency, defaults.pause) == (86400, 2, 0.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1 day", 86400), ("12 hours", 43200), ("90 minutes", 5400), ("30min", 1800), ("2 weeks", 14 * 86400),
     ("3600 seconds", 3600), ("1 month", 31 * 86400), ("2mo", 62 * 86400), ("1 year", 365 * 86400)],
)
def test_intervals_take_short_and_long_units(text: str, seconds: int) -> None:
    assert parse_interval(text) == seconds


def test_tahoes_own_durations_stay_as_strict_as_tahoe() -> None:
    with pytest.raises(ValueError, match="no unit"):
        parse_duration("12 hours")
    assert parse_duration("60 days") == 60 * 86400


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["maintenance.targets = tahoe:"], r"\[client\]maintenance.interval: missing"),
        (["maintenance.targets = tahoe:", "maintenance.interval = often"], r"maintenance.interval: 'often' has no unit"),
        (["maintenance.targets = tahoe:", "maintenance.interval = some hours"], "must start with a whole number"),
        (["maintenance.targets = tahoe:", "maintenance.interval = 30 seconds"], "shorter than a minute"),
        (["maintenance.targets = tahoe", "maintenance.interval = 1 day"], "neither an alias"),
        (["maintenance.targets = tahoe:", "maintenance.interval = 1 day", "maintenance.concurrency = 0"],
         "maintenance.concurrency: must be between 1 and 100"),
        (["maintenance.targets = tahoe:", "maintenance.interval = 1 day", "maintenance.concurrency = many"],
         "maintenance.concurrency: 'many' is not a whole number"),
        (["maintenance.targets = tahoe:", "maintenance.interval = 1 day", "maintenance.pause = soon"],
         "maintenance.pause: 'soon' is not a number of seconds"),
        (["maintenance.targets = tahoe:", "maintenance.interval = 1 day", "maintenance.pause = -1"],
         "maintenance.pause: must be between 0 and 3600"),
        (["maintenance.interval = 1 day"], "maintenance.interval: set, but .*maintenance.targets names nothing"),
        (["maintenance.target = tahoe:"], r"\[client\]maintenance.target: unknown key"),
    ],
)
def test_bad_settings_are_refused_naming_the_key(lines: list[str], message: str) -> None:
    error = refused(*lines)
    assert error.startswith("/node/tahoe.cfg: [client]maintenance.")
    assert re.search(message, error), error

