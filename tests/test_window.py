"""Quiet hours (bulksend.window): parsing, local wall time in every zone of a number, midnight,
days of the week, daylight-saving changes, and the numbering plan's zones. No network, no wall
clock: every instant is given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import phonenumbers
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers.timezone import (
    UNKNOWN_TIMEZONE,
    time_zones_for_geographical_number,
    time_zones_for_number,
)

from bulksend.errors import ConfigError
from bulksend.window import (
    DEFAULT_TIMEZONE,
    NEVER,
    NumberZones,
    SendWindow,
    WindowGate,
    parse_days,
    parse_window,
    zone,
)

NY = ("America/New_York",)
JOBURG = ("Africa/Johannesburg",)
SYDNEY = ("Australia/Sydney",)
LORD_HOWE = ("Australia/Lord_Howe",)  # daylight-saving time of half an hour
ALL_DAYS = frozenset(range(7))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# -- parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("08:00-21:00", (480, 1260)),
        ("8:00-21:00", (480, 1260)),
        (" 20:00 - 08:00 ", (1200, 480)),
        ("00:00-24:00", (0, 1440)),
        ("22:30-24:00", (1350, 1440)),
        ("23:59-00:01", (1439, 1)),
        ("20:00-00:00", (1200, 1440)),
    ],
)
def test_windows_parse(text: str, expected: tuple[int, int]) -> None:
    assert parse_window(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "8-21", "08:00", "08:00-", "25:00-26:00", "08:60-09:00", "24:30-08:00", "24:00-08:00",
     "09:00-09:00", "00:00-00:00", "08:00-21:00-22:00", "a8:00-21:00"],
)  # fmt: skip
def test_bad_windows_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="send-window"):
        parse_window(text)


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("Mon-Fri", {0, 1, 2, 3, 4}),
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("Sat,Sun", {5, 6}),
        ("Fri-Mon", {4, 5, 6, 0}),
        ("Mon-Wed,Fri", {0, 1, 2, 4}),
        ("Monday-Friday", {0, 1, 2, 3, 4}),
        ("Sun", {6}),
        ("Mon-Sun", set(range(7))),
        ("Tue-Tue", {1}),
    ],
)
def test_days_parse(text: str, days: set[int]) -> None:
    assert parse_days(text) == days


@pytest.mark.parametrize("text", ["", "Mo-Fr", "Mon-", "Mon,,Fri", "Funday", "1-5"])
def test_bad_days_are_refused(text: str) -> None:
    with pytest.raises(ConfigError, match="send-days"):
        parse_days(text)


@given(
    st.integers(0, 1439),
    st.integers(1, 1440),
    st.sets(st.integers(0, 6), min_size=1),
)
def test_a_window_renders_as_it_parses(start: int, end: int, days: set[int]) -> None:
    assume(start != end)
    window = SendWindow(start, end, frozenset(days))
    text, _, day_text = str(window).partition(" ")
    assert SendWindow.parse(text, day_text or None) == window


def test_unknown_zones_are_refused_clearly() -> None:
    for name in ("Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "America/New_York "):
        with pytest.raises(ConfigError, match="unknown time zone"):
            zone(name)
    with pytest.raises(ConfigError):
        NumberZones(default="Nowhere/Special")


# -- one zone, one day ----------------------------------------------------------------------------


def test_the_window_holds_in_the_recipients_local_time() -> None:
    window = SendWindow.parse("08:00-21:00")
    # 12:30 UTC in December: 07:30 in New York, 14:30 in Johannesburg
    now = utc(2026, 12, 7, 12, 30)
    assert not window.is_open(NY, now)
    assert window.is_open(JOBURG, now)
    assert window.next_opening(NY, now) == utc(2026, 12, 7, 13, 0)
    assert window.next_opening(JOBURG, now) == now
    assert window.next_change(JOBURG, now) == utc(2026, 12, 7, 19, 0)  # 21:00 SAST


def test_start_is_inclusive_and_end_exclusive() -> None:
    window = SendWindow.parse("08:00-21:00")
    assert window.is_open(JOBURG, utc(2026, 12, 7, 6, 0))  # 08:00 SAST
    assert not window.is_open(JOBURG, utc(2026, 12, 7, 5, 59, 59))
    assert not window.is_open(JOBURG, utc(2026, 12, 7, 19, 0))  # 21:00 SAST
    assert window.is_open(JOBURG, utc(2026, 12, 7, 18, 59, 59))


def test_a_window_across_midnight() -> None:
    window = SendWindow.parse("20:00-08:00")
    assert window.crosses_midnight
    assert window.is_open(JOBURG, utc(2026, 12, 7, 21, 0))  # 23:00
    assert window.is_open(JOBURG, utc(2026, 12, 8, 3, 0))  # 05:00 next day
    assert not window.is_open(JOBURG, utc(2026, 12, 8, 6, 0))  # 08:00
    assert window.next_opening(JOBURG, utc(2026, 12, 8, 6, 0)) == utc(2026, 12, 8, 18, 0)
    assert window.next_change(JOBURG, utc(2026, 12, 7, 21, 0)) == utc(2026, 12, 8, 6, 0)
    whole_day = SendWindow.parse("00:00-24:00")
    assert whole_day.is_open(JOBURG, utc(2026, 12, 7, 21, 59))
    assert whole_day.next_change(JOBURG, utc(2026, 12, 7, 21, 59)) is None


def test_days_belong_to_the_evening_a_night_window_opens_on() -> None:
    window = SendWindow.parse("20:00-08:00", "Mon-Fri")
    # 2026-12-11 is a Friday, 12-12 Saturday, 12-14 Monday (Johannesburg is UTC+2)
    assert window.is_open(JOBURG, utc(2026, 12, 11, 21, 0))  # Friday 23:00
    assert window.is_open(JOBURG, utc(2026, 12, 12, 5, 0))  # Saturday 07:00: Friday's window
    assert not window.is_open(JOBURG, utc(2026, 12, 12, 19, 0))  # Saturday 21:00
    assert not window.is_open(JOBURG, utc(2026, 12, 14, 3, 0))  # Monday 05:00: Sunday's window
    assert window.next_opening(JOBURG, utc(2026, 12, 12, 7, 0)) == utc(2026, 12, 14, 18, 0)


def test_working_days_only() -> None:
    window = SendWindow.parse("09:00-17:00", "Mon-Fri")
    saturday = utc(2026, 12, 12, 10, 0)
    assert not window.is_open(JOBURG, saturday)
    assert window.next_opening(JOBURG, saturday) == utc(2026, 12, 14, 7, 0)  # Monday 09:00


# -- several zones --------------------------------------------------------------------------------


def test_a_number_in_several_zones_waits_for_the_window_in_all_of_them() -> None:
    window = SendWindow.parse("08:00-21:00")
    australia = NumberZones()("61412345678")
    assert len(australia) > 1 and "Australia/Perth" in australia
    # 22:00 UTC in December: 09:00 in Sydney (AEDT), 06:00 in Perth: not yet
    now = utc(2026, 12, 7, 22, 0)
    assert window.is_open(SYDNEY, now)
    assert not window.is_open(australia, now)
    opening = window.next_opening(australia, now)
    # Perth (UTC+8) opens at 00:00 UTC, but the plan also names the Cocos Islands (UTC+6:30)
    assert "Indian/Cocos" in australia
    assert opening == utc(2026, 12, 8, 1, 30)
    assert all(window.is_open((name,), opening) for name in australia)


def test_a_window_that_never_holds_in_all_zones_never_opens() -> None:
    russia = NumberZones()("79161234567")
    assert window_never(SendWindow.parse("09:00-10:00"), russia)
    # a long enough window overlaps: 08:00-21:00 holds from 06:00 to 09:00 UTC (UTC+2 .. UTC+12)
    wide = SendWindow.parse("08:00-21:00")
    opening = wide.next_opening(russia, utc(2026, 12, 7, 12, 0))
    assert opening == utc(2026, 12, 8, 6, 0)
    assert wide.next_change(russia, opening) == utc(2026, 12, 8, 9, 0)


def window_never(window: SendWindow, zones: tuple[str, ...]) -> bool:
    now = utc(2026, 12, 7, 12, 0)
    return not window.is_open(zones, now) and window.next_opening(zones, now) is None


# -- daylight-saving changes ----------------------------------------------------------------------
# New York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST (06:00 UTC)


def test_a_window_opening_in_the_spring_forward_gap_opens_at_the_jump() -> None:
    window = SendWindow.parse("02:30-09:00")
    now = utc(2026, 3, 8, 5, 0)  # 00:00 EST
    assert window.next_opening(NY, now) == utc(2026, 3, 8, 7, 0)  # 03:00 EDT, the jump
    assert not window.is_open(NY, utc(2026, 3, 8, 6, 59, 59))  # 01:59:59 EST
    assert window.is_open(NY, utc(2026, 3, 8, 7, 0))
    assert window.next_change(NY, utc(2026, 3, 8, 7, 0)) == utc(2026, 3, 8, 13, 0)  # 09:00 EDT


def test_a_window_inside_the_gap_does_not_open_that_day() -> None:
    window = SendWindow.parse("02:15-02:45")
    opening = window.next_opening(NY, utc(2026, 3, 8, 5, 0))
    assert opening == utc(2026, 3, 9, 6, 15)  # the next day, 02:15 EDT


def test_a_window_ending_in_the_gap_closes_at_the_jump() -> None:
    window = SendWindow.parse("20:00-02:30")
    assert window.is_open(NY, utc(2026, 3, 8, 6, 30))  # 01:30 EST
    assert window.next_change(NY, utc(2026, 3, 8, 6, 30)) == utc(2026, 3, 8, 7, 0)


def test_the_repeated_hour_of_fall_back_is_open_twice() -> None:
    window = SendWindow.parse("01:30-02:00")
    now = utc(2026, 11, 1, 4, 0)  # 00:00 EDT
    first = window.next_opening(NY, now)
    assert first == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    closing = window.next_change(NY, first)
    assert closing == utc(2026, 11, 1, 6, 0)  # 02:00 EDT: the clocks go back to 01:00 EST
    second = window.next_change(NY, closing)
    assert second == utc(2026, 11, 1, 6, 30)  # 01:30 EST
    assert window.next_change(NY, second) == utc(2026, 11, 1, 7, 0)  # 02:00 EST


def test_fall_back_reopens_a_window_that_ends_in_the_repeated_hour() -> None:
    window = SendWindow.parse("00:00-01:30")
    assert window.is_open(NY, utc(2026, 11, 1, 5, 0))  # 01:00 EDT
    closing = window.next_change(NY, utc(2026, 11, 1, 5, 0))
    assert closing == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert window.next_change(NY, closing) == utc(2026, 11, 1, 6, 0)  # back to 01:00 EST
    assert window.next_change(NY, utc(2026, 11, 1, 6, 0)) == utc(2026, 11, 1, 6, 30)


def test_half_hour_daylight_saving_at_lord_howe() -> None:
    # Lord Howe: 2026-10-04 02:00 +10:30 -> 02:30 +11:00 (15:30 UTC on 10-03)
    window = SendWindow.parse("02:10-05:00")
    opening = window.next_opening(LORD_HOWE, utc(2026, 10, 3, 12, 0))
    assert opening == utc(2026, 10, 3, 15, 30)


def test_daylight_saving_moves_the_opening_in_utc() -> None:
    window = SendWindow.parse("08:00-21:00")
    assert window.next_opening(NY, utc(2026, 1, 5, 5, 0)) == utc(2026, 1, 5, 13, 0)  # EST
    assert window.next_opening(NY, utc(2026, 7, 6, 5, 0)) == utc(2026, 7, 6, 12, 0)  # EDT


# -- properties -----------------------------------------------------------------------------------

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "Pacific/Chatham",
    "America/St_Johns",
    "Africa/Johannesburg",
    "Pacific/Apia",
]
instants = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
zone_sets = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(
    lambda names: tuple(sorted(names))
)


def _window(start: int, end: int, days: frozenset[int]) -> SendWindow | None:
    return None if start == end else SendWindow(start, end, days)


window_strategy = st.builds(
    _window,
    st.integers(0, 1439),
    st.integers(1, 1440),
    st.frozensets(st.integers(0, 6), min_size=1),
).filter(lambda w: w is not None)


@settings(max_examples=60, deadline=None)
@given(window_strategy, zone_sets, instants, st.data())
def test_the_next_change_is_the_first_instant_the_state_changes(
    window: SendWindow, zones: tuple[str, ...], now: datetime, data: st.DataObject
) -> None:
    state = window.is_open(zones, now)
    change = window.next_change(zones, now)
    if change is None:
        horizon = now + timedelta(days=7)
    else:
        assert change > now
        assert window.is_open(zones, change) != state
        horizon = change
    # sampled instants before it have the state of now
    for _ in range(25):
        seconds = data.draw(st.floats(0, (horizon - now).total_seconds(), exclude_max=True))
        instant = now + timedelta(seconds=seconds)
        if instant < horizon:  # (rounded to microseconds, it may reach it)
            assert window.is_open(zones, instant) == state, instant


@settings(max_examples=60, deadline=None)
@given(window_strategy, zone_sets, instants)
def test_the_next_opening_is_open_and_open_means_open_in_every_zone(
    window: SendWindow, zones: tuple[str, ...], now: datetime
) -> None:
    assert window.is_open(zones, now) == all(window.is_open((z,), now) for z in zones)
    opening = window.next_opening(zones, now)
    if opening is not None:
        assert opening >= now and window.is_open(zones, opening)


@given(st.integers(0, 1439), st.integers(0, 1439), instants, st.sampled_from(ZONES))
def test_a_night_window_is_the_complement_of_its_day_window(
    start: int, end: int, now: datetime, name: str
) -> None:
    assume(start != end)
    day = SendWindow(min(start, end), max(start, end))
    night = SendWindow(max(start, end), min(start, end))
    assert night.is_open((name,), now) != day.is_open((name,), now)


@given(instants, st.sampled_from(ZONES))
def test_the_whole_day_is_always_open(now: datetime, name: str) -> None:
    assert SendWindow.parse("00:00-24:00").is_open((name,), now)


# -- a number's zones -----------------------------------------------------------------------------


def test_zones_from_the_numbering_plan() -> None:
    zones = NumberZones()
    assert zones("12684641234") == ("America/Antigua",)  # not every zone of +1
    assert len(zones("18005551234")) > 30  # toll-free: no place
    assert zones("12125551234") == NY
    assert zones("27821234567") == JOBURG
    assert zones("13105551234") == ("America/Los_Angeles",)
    assert "Asia/Kamchatka" in zones("79161234567")
    assert zones("99912345") is zones.default == (DEFAULT_TIMEZONE,)  # no such country
    assert zones("12125551235") is zones("12125551234"), "cached by prefix"


def test_the_default_zone_is_configurable_and_identifiable() -> None:
    zones = NumberZones(default="Europe/Paris")
    assert zones.default == ("Europe/Paris",)
    assert zones("99912345") is zones.default


def test_a_time_zone_column_overrides_the_numbering_plan() -> None:
    zones = NumberZones()
    assert zones.override("Asia/Tokyo") == ("Asia/Tokyo",)
    assert zones.override("Asia/Tokyo") is zones.override("Asia/Tokyo")
    with pytest.raises(ConfigError, match="unknown time zone"):
        zones.override("Asia/Atlantis")


def test_the_cache_parses_a_prefix_once() -> None:
    zones = NumberZones()
    for i in range(2000):
        zones(f"1212555{i:04d}")  # one area, one exchange block
        zones(f"2782{i:07d}")  # a one-zone country: never parsed
    assert zones.misses <= 2


def _examples() -> list[tuple[str, phonenumbers.PhoneNumber]]:
    out = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (
            PhoneNumberType.FIXED_LINE,
            PhoneNumberType.MOBILE,
            PhoneNumberType.FIXED_LINE_OR_MOBILE,
            PhoneNumberType.TOLL_FREE,
        ):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                out.append((region, example))
    return out


def test_the_cached_zones_agree_with_phonenumbers_for_every_example_number() -> None:
    zones = NumberZones()
    examples = _examples()
    assert len(examples) > 700
    for region, example in examples:
        msisdn = phonenumbers.format_number(example, PhoneNumberFormat.E164)[1:]
        # +1: the area code's zones whatever the type (the module docstring says why)
        found = (
            time_zones_for_geographical_number(example)
            if example.country_code == 1
            else time_zones_for_number(example)
        )
        expected = tuple(sorted(z for z in found if z != UNKNOWN_TIMEZONE))
        assert zones(msisdn) == (expected or zones.default), (region, msisdn)


# -- the per-row gate -----------------------------------------------------------------------------


def test_the_gate_answers_per_row_and_follows_the_clock() -> None:
    gate = WindowGate(SendWindow.parse("08:00-21:00"), NumberZones())
    now = utc(2026, 12, 7, 12, 30).timestamp()  # 07:30 New York, 14:30 Johannesburg
    assert gate.opening("27821234567", now) is None
    assert gate.opening("12125551234", now) == utc(2026, 12, 7, 13, 0).timestamp()
    later = utc(2026, 12, 7, 13, 0).timestamp()
    assert gate.opening("12125551234", later) is None, "the cached state ends at the opening"
    evening = utc(2026, 12, 7, 19, 30).timestamp()  # 21:30 in Johannesburg
    assert gate.opening("27821234567", evening) == utc(2026, 12, 8, 6, 0).timestamp()
    assert gate.defaulted == 0


def test_the_gate_counts_rows_of_the_default_zone_and_takes_a_zone_column() -> None:
    gate = WindowGate(SendWindow.parse("08:00-21:00"), NumberZones(default="Asia/Tokyo"))
    now = utc(2026, 12, 7, 12, 30).timestamp()  # 21:30 in Tokyo
    assert gate.opening("99912345", now) == utc(2026, 12, 7, 23, 0).timestamp()
    assert gate.opening("99912346", now) is not None
    assert gate.defaulted == 2
    assert gate.opening("12125551234", now, "Africa/Johannesburg") is None  # the column wins
    with pytest.raises(ConfigError):
        gate.opening("12125551234", now, "Mars/Base")


def test_the_gate_says_never_for_a_window_that_cannot_hold() -> None:
    gate = WindowGate(SendWindow.parse("09:00-10:00"), NumberZones())
    assert gate.opening("79161234567", utc(2026, 12, 7, 12, 0).timestamp()) == NEVER
