"""``[storage]expire.*``: the lease checker's settings, accepted and refused as Tahoe 1.20 does.

Which combinations the real Tahoe 1.20 starts with, and which it refuses, was
observed by running it (``tahoe run``) on each of these configurations.
"""

from __future__ import annotations

import calendar

import pytest

from lafs.config import (
    ConfigError,
    ExpirationMode,
    ExpirationSettings,
    NodeConfig,
    parse_cutoff_date,
    parse_duration,
)

DAY = 86400


def settings(*lines: str) -> ExpirationSettings:
    text = "[storage]\nenabled = true\n" + "".join(line + "\n" for line in lines)
    return NodeConfig.from_text("/node", text).storage.expiration


def test_expiration_is_off_by_default_and_covers_both_share_kinds() -> None:
    assert settings() == ExpirationSettings(
        enabled=False, mode=ExpirationMode.AGE, override_lease_duration=None, cutoff_date=None, immutable=True, mutable=True
    )


def test_age_mode_with_an_override_duration() -> None:
    got = settings("expire.enabled = true", "expire.mode = age", "expire.override_lease_duration = 60 days")
    assert got.enabled and got.mode is ExpirationMode.AGE and got.override_lease_duration == 60 * DAY


def test_cutoff_date_mode_is_midnight_utc_of_that_day() -> None:
    got = settings("expire.enabled = true", "expire.mode = cutoff-date", "expire.cutoff_date = 2009-01-16")
    assert got.mode is ExpirationMode.CUTOFF_DATE
    assert got.cutoff_date == calendar.timegm((2009, 1, 16, 0, 0, 0))


def test_share_kinds_can_be_left_alone() -> None:
    got = settings("expire.enabled = true", "expire.mode = age", "expire.immutable = false", "expire.mutable = no")
    assert (got.immutable, got.mutable) == (False, False)


def test_keys_of_the_other_mode_are_accepted_as_tahoe_does() -> None:
    # Tahoe starts with a cutoff date in age mode (never reading it) and an override in
    # cutoff-date mode (reading, but not using, it).
    assert settings("expire.enabled = true", "expire.mode = age", "expire.cutoff_date = junk").cutoff_date is None
    got = settings(
        "expire.enabled = true",
        "expire.mode = cutoff-date",
        "expire.cutoff_date = 2020-01-01",
        "expire.override_lease_duration = 2mo",
    )
    assert got.override_lease_duration == 62 * DAY


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["expire.enabled = maybe"], r"\[storage\]expire.enabled: 'maybe' is not a boolean"),
        (["expire.enabled = true"], r"\[storage\]expire.mode: missing; with expire.enabled = true it must be"),
        (["expire.mode = bogus"], r"\[storage\]expire.mode: 'bogus' must be 'age' or 'cutoff-date'"),
        (["expire.enabled = true", "expire.mode = AGE"], r"'AGE' must be 'age' or 'cutoff-date'"),
        (["expire.mode = cutoff-date"], r"\[storage\]expire.cutoff_date: missing; expire.mode = cutoff-date needs"),
        (
            ["expire.enabled = true", "expire.mode = cutoff-date", "expire.cutoff_date = 2020-13-01"],
            r"\[storage\]expire.cutoff_date: '2020-13-01' is not a real date",
        ),
        (
            ["expire.mode = cutoff-date", "expire.cutoff_date = 2020-1-5"],
            r"\[storage\]expire.cutoff_date: '2020-1-5' is not a date of the form YYYY-MM-DD",
        ),
        (
            ["expire.override_lease_duration = 60 blorts"],
            r"\[storage\]expire.override_lease_duration: '60 blorts' has no unit",
        ),
        (
            ["expire.mode = age", "expire.override_lease_duration = 1.5 days"],
            r"expire.override_lease_duration: '1.5 days' must start with a whole number of days",
        ),
        (
            ["expire.mode = cutoff-date", "expire.cutoff_date = 2020-01-01", "expire.override_lease_duration = x"],
            r"expire.override_lease_duration: 'x' has no unit",
        ),
        (["expire.enabled = true", "expire.mode = age", "expire.immutable = sometimes"], r"expire.immutable: 'sometimes'"),
        (["expire.mutable = 2"], r"\[storage\]expire.mutable: '2' is not a boolean"),
    ],
)
def test_bad_expiration_settings_name_the_key_and_the_problem(lines: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        settings(*lines)
    assert "tahoe.cfg" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7days", 7 * DAY),
        ("31day", 31 * DAY),
        ("60 days", 60 * DAY),
        ("2mo", 62 * DAY),
        ("2 mos", 62 * DAY),
        ("3 month", 93 * DAY),
        ("3month", 93 * DAY),
        ("12 months", 372 * DAY),
        ("2years", 730 * DAY),
        ("0 days", 0),
    ],
)
def test_duration_strings(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["60", "5 hours", "10 seconds", "1 yr", "7 DAYS", "1 dayz", "days", "-1 days", ""])
def test_bad_duration_strings(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text)):
        parse_duration(text)


@pytest.mark.parametrize("text", ["junk", "2020-02-30", "20-01-01", "2020-01-01T00:00:00", ""])
def test_bad_cutoff_dates(text: str) -> None:
    with pytest.raises(ValueError, match="date"):
        parse_cutoff_date(text)
