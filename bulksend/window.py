"""Quiet hours: when a recipient may be texted, in the recipient's own time zone. Pure rules.

A :class:`SendWindow` is ``--send-window HH:MM-HH:MM`` (start inclusive, end exclusive, local wall
time; ``24:00`` ends at midnight; a start after the end crosses midnight: ``20:00-08:00``) and
``--send-days`` (``Mon-Fri``, ``Sat,Sun``, ``Fri-Mon``; default every day). A window that crosses
midnight belongs to the day it opens on: with ``20:00-08:00`` and ``Mon-Fri``, Friday 23:00 and
Saturday 07:00 are open, Monday 07:00 is not (that is Sunday's window).

For a number that may be in several zones (an Australian or a Russian mobile) the window must hold
in **all** of them: :meth:`SendWindow.is_open` is true at a UTC instant when it holds at the local
wall time of every zone. Daylight-saving time comes from the zone data (:mod:`zoneinfo`; the
``tzdata`` package supplies it where the system has none):

* when a window's start falls in a spring-forward gap (``02:30`` on a day the clocks jump from
  ``02:00`` to ``03:00``), the window opens at the jump: the first instant whose wall time is
  past the start;
* when the clocks fall back, an hour of wall time happens twice, and the window holds in both
  (``01:30`` opens at the first ``01:30``; a window ending at ``01:30`` is closed from the first
  ``01:30`` until the clocks go back, and open again until the second).

:meth:`SendWindow.next_change` is the first instant after ``now`` at which :meth:`is_open` changes
(looked for up to nine days ahead; None when it never changes: a window that never holds in all of
a number's zones at once, say ``09:00-10:00`` across Russia, never opens). :meth:`next_opening` is
``now`` when open, else that change.

:class:`NumberZones` gives a number's zones from the numbering plan, with the time-zone data
shipped with ``phonenumbers`` (what ``phonenumbers.timezone.time_zones_for_number`` answers:
a geographic number has its area's zone(s), a mobile of a country with several zones has them
all). It is cached so that the per-row cost is a dictionary look-up or two:

* a country whose numbering plan knows one zone set (most countries: ``+27`` ->
  ``Africa/Johannesburg``) is answered from its calling code, without parsing the number (a number
  of that country that the plan does not know gets the country's zones too);
* a ``+1`` number (the North American plan) gets its area code's zone(s), from the zone data by
  longest prefix, without parsing. For a geographic number that is what phonenumbers answers; for
  the others (a Caribbean mobile, a US toll-free number) phonenumbers answers every zone of ``+1``,
  from Guam to Samoa, in which no window of a working day ever holds at once: the island's own
  zone is the better answer, and toll-free area codes (``800``...) still get them all;
* for the other countries of several zones (``+7``, ``+61``, ``+55``, ...), the answer is cached by the number's
  calling code and first four national digits (or the longest prefix of the zone data that
  matches, up to nine digits) and its length: what decides it in practice (the area, and the
  number's type -- fixed or mobile). A cache miss parses the number (about 30 µs). A number
  the plan does not know speaks for its neighbours only after four of them were unknown too
  (then the rest of that prefix get the default without being parsed); a known one at once.
  Measured against ``time_zones_for_number`` on 2 x 40,000 random Australian, Russian, Brazilian
  and Mexican numbers: every valid one (70,293) got its own answer; 7 invalid ones got their
  known neighbours' zones instead of the default. Every example number of the plan agrees
  (``tests/test_window.py``).
* a number with no known zone gets :attr:`NumberZones.default` (``--default-timezone``, UTC when
  not given: see :data:`DEFAULT_TIMEZONE`), the very tuple object, so a caller counts those rows
  with an identity test.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as wall_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers.timezone import UNKNOWN_TIMEZONE, time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from bulksend.errors import ConfigError

__all__ = [
    "DEFAULT_TIMEZONE",
    "NEVER",
    "NumberZones",
    "SendWindow",
    "WindowGate",
    "Zones",
    "parse_days",
    "parse_window",
    "zone",
]

Zones = tuple[str, ...]
"""IANA zone names, sorted, at least one."""

DEFAULT_TIMEZONE = "UTC"
"""The zone of numbers the numbering plan cannot place, unless ``--default-timezone`` says
otherwise. UTC because it means the same on every machine: the host's own zone would make the
same cron job send at different hours on a laptop and on a server. The rows it applies to are
counted and shown, so an operator whose audience lives elsewhere sets the audience's zone."""

LOOKAHEAD_DAYS = 9
"""How far :meth:`SendWindow.next_change` looks: a week, a window crossing midnight, a margin."""

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
_KEY_NATIONAL_DIGITS = 4
_UNKNOWN_TRIES = 4


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The :class:`~zoneinfo.ZoneInfo` called ``name``; ConfigError for an unknown name."""
    if not name or name != name.strip() or name.startswith(("/", ".")) or ".." in name:
        raise ConfigError(f"unknown time zone {name!r} (an IANA name, e.g. America/New_York)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"unknown time zone {name!r} (an IANA name, e.g. America/New_York)"
        ) from None


# -- parsing --------------------------------------------------------------------------------------


def parse_window(text: str) -> tuple[int, int]:
    """``HH:MM-HH:MM`` -> (start, end) in minutes after midnight; end may be 1440 (``24:00``)."""
    m = _WINDOW.fullmatch(text)
    if m is None:
        raise ConfigError(f"--send-window wants HH:MM-HH:MM (e.g. 08:00-21:00), not {text!r}")
    sh, sm, eh, em = map(int, m.groups())
    if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em):
        raise ConfigError(f"--send-window {text!r}: not a time of day")
    start, end = sh * 60 + sm, eh * 60 + em
    if start == end:
        raise ConfigError(
            f"--send-window {text!r} is empty or the whole day (for the whole day, 00:00-24:00)"
        )
    return start, end or 1440  # "-00:00" is midnight: "-24:00"


_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, text: str) -> int:
    key = name.strip().lower()
    for number, (short, full) in enumerate(zip(DAY_NAMES, _FULL_DAY_NAMES, strict=True)):
        if key in (short, full):
            return number
    raise ConfigError(f"--send-days {text!r}: {name.strip()!r} is not a day (Mon ... Sun)")


def parse_days(text: str) -> frozenset[int]:
    """``Mon-Fri``, ``Sat,Sun``, ``Fri-Mon`` (wrapping), ``Mon-Wed,Fri`` -> weekday numbers
    (Monday 0); day names in any case, three letters or whole."""
    days: set[int] = set()
    for part in text.split(","):
        if not part.strip():
            raise ConfigError(f"--send-days {text!r}: an empty item")
        first, dash, last = part.partition("-")
        a = _day(first, text)
        if not dash:
            days.add(a)
            continue
        b = _day(last, text)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


# -- the window -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendWindow:
    """When recipients may be texted, in their local wall time (see the module docstring)."""

    start: int
    """Minutes after local midnight at which the window opens (0-1439)."""
    end: int
    """Minutes after local midnight at which it closes (1-1440; 0 is read as 1440); before
    ``start``: the next day."""
    days: frozenset[int] = frozenset(range(7))
    """Weekdays (Monday 0) on which the window opens."""

    def __post_init__(self) -> None:
        if self.end == 0:  # "20:00-00:00": until midnight
            object.__setattr__(self, "end", 1440)
        if not (0 <= self.start < 1440 and 0 < self.end <= 1440 and self.start != self.end):
            raise ConfigError(f"not a send window: {self.start}-{self.end} minutes")
        if not self.days or not self.days <= frozenset(range(7)):
            raise ConfigError("--send-days names no day")

    @classmethod
    def parse(cls, window: str, days: str | None = None) -> SendWindow:
        start, end = parse_window(window)
        return cls(start, end, parse_days(days) if days else frozenset(range(7)))

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def __str__(self) -> str:
        text = f"{_hhmm(self.start)}-{_hhmm(self.end)}"
        if self.days != frozenset(range(7)):
            text += " " + ",".join(DAY_NAMES[d].title() for d in sorted(self.days))
        return text

    def holds_at(self, wall: datetime) -> bool:
        """Whether the window holds at a local wall time (naive, or aware in its own zone)."""
        minute = wall.hour * 60 + wall.minute + (wall.second + wall.microsecond / 1e6) / 60
        if self.start < self.end:
            return self.start <= minute < self.end and wall.weekday() in self.days
        if minute >= self.start:
            return wall.weekday() in self.days
        if minute < self.end:
            return (wall.weekday() - 1) % 7 in self.days
        return False

    def is_open(self, zones: Sequence[str], now: datetime) -> bool:
        """Whether the window holds now (an aware datetime) in every one of ``zones``."""
        holds = self.holds_at
        return all(holds(now.astimezone(zone(name))) for name in zones)

    def next_change(self, zones: Sequence[str], now: datetime) -> datetime | None:
        """The first instant after ``now`` at which :meth:`is_open` changes (UTC), or None when
        it does not change within :data:`LOOKAHEAD_DAYS`."""
        state = self.is_open(zones, now)
        for instant in sorted({c for name in zones for c in self._candidates(name, now)}):
            if instant > now and self.is_open(zones, instant) != state:
                return instant
        return None

    def next_opening(self, zones: Sequence[str], now: datetime) -> datetime | None:
        """``now`` when the window is open in all ``zones``, else when it next is (None: not
        within :data:`LOOKAHEAD_DAYS`: it never holds in all of them at once)."""
        if self.is_open(zones, now):
            return now
        return self.next_change(zones, now)

    def _candidates(self, name: str, now: datetime) -> list[datetime]:
        """Every instant (UTC) in the look-ahead at which the window may open or close in zone
        ``name``: its edges in local wall time (both of a repeated hour) and the zone's offset
        changes (a gap or a repeated hour moves the wall clock over an edge)."""
        tz = zone(name)
        first = now.astimezone(tz).date() - timedelta(days=1)
        out: list[datetime] = []
        edges = [wall_time(self.start // 60, self.start % 60)]
        end_day_offset = 1 if self.end == 1440 else 0
        edges_end = (
            wall_time(0, 0) if self.end == 1440 else wall_time(self.end // 60, self.end % 60)
        )
        for i in range(LOOKAHEAD_DAYS + 2):
            day = first + timedelta(days=i)
            for edge, shift in ((edges[0], 0), (edges_end, end_day_offset)):
                local = datetime.combine(day + timedelta(days=shift), edge)
                for fold in (0, 1):
                    instant = local.replace(tzinfo=tz, fold=fold).astimezone(UTC)
                    if instant.astimezone(tz).replace(tzinfo=None) == local:
                        out.append(instant)
            transition = _transition(tz, day)
            if transition is not None:
                out.append(transition)
        return out


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _midnight_utc(tz: ZoneInfo, day: date) -> datetime:
    return datetime.combine(day, wall_time(0, 0)).replace(tzinfo=tz).astimezone(UTC)


def _transition(tz: ZoneInfo, day: date) -> datetime | None:
    """The instant (UTC, to the second) the zone's offset changes between the local midnights of
    ``day`` and the next day, or None (at most one change a day is assumed: true of every zone)."""
    lo = _midnight_utc(tz, day) - timedelta(hours=3)  # margin: the midnight itself may be odd
    hi = _midnight_utc(tz, day + timedelta(days=1)) + timedelta(hours=3)
    before = lo.astimezone(tz).utcoffset()
    if hi.astimezone(tz).utcoffset() == before:
        return None
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            mid = lo + timedelta(seconds=1)
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


# -- a number's zones -----------------------------------------------------------------------------


def _country_zones() -> tuple[dict[str, Zones | None], frozenset[str]]:
    """Calling code -> its one zone set (None when its prefixes name several), and the codes."""
    codes = frozenset(str(code) for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
    sets: dict[str, set[Zones]] = {}
    for prefix, zones in TIMEZONE_DATA.items():
        for length in (1, 2, 3):
            cc = prefix[:length]
            if cc in codes:
                sets.setdefault(cc, set()).add(tuple(sorted(zones)))
                break
    single: dict[str, Zones | None] = {}
    for cc, found in sets.items():
        only = next(iter(found)) if len(found) == 1 else None
        single[cc] = None if only is None or UNKNOWN_TIMEZONE in only else only
    return single, codes


class NumberZones:
    """A number's zones from the numbering plan, cached (see the module docstring)."""

    __slots__ = (
        "_areas",
        "_by_key",
        "_deep",
        "_routes",
        "_tuples",
        "_unknown",
        "default",
        "misses",
    )

    def __init__(self, default: str = DEFAULT_TIMEZONE) -> None:
        zone(default)  # an unknown name fails here, before any row
        self.default: Zones = (default,)
        """What a number with no known zone gets (this very tuple)."""
        by_country, codes = _country_zones()
        # The first three digits route a number: to its country's one zone set, to the +1 plan,
        # or to the calling code of a country of several zones (the slow path).
        self._routes: dict[str, Zones | str] = {}
        for number in range(100, 1000):
            head = str(number)
            cc = next((head[:n] for n in (1, 2, 3) if head[:n] in codes), None)
            if cc is None or cc not in by_country:
                self._routes[head] = self.default
            elif cc == "1":
                self._routes[head] = "1"
            else:
                self._routes[head] = by_country[cc] or cc
        self._deep = {
            prefix[:n] for prefix in TIMEZONE_DATA for n in range(3, len(prefix)) if len(prefix) > 4
        }
        """Prefixes of at least three digits that a longer prefix of the zone data splits."""
        self._by_key: dict[str, Zones] = {}
        self._unknown: dict[str, int] = {}
        self._tuples: dict[Zones, Zones] = {}
        self._areas: dict[str, Zones] = {}  # +1 prefixes (area codes, mostly) -> zones
        self.misses = 0
        """Numbers parsed (cache misses)."""

    def __call__(self, msisdn: str) -> Zones:
        """The zones of ``msisdn`` (international digits)."""
        route = self._routes.get(msisdn[:3], self.default)
        if isinstance(route, tuple):  # a country of one zone set, or none known
            return route
        if route == "1":
            return self._nanp(msisdn)
        head = msisdn[: len(route) + _KEY_NATIONAL_DIGITS]
        if head in self._deep:  # the zone data splits it further: its longest prefix decides
            for length in range(TIMEZONE_LONGEST_PREFIX, len(head), -1):
                if msisdn[:length] in TIMEZONE_DATA:
                    head = msisdn[:length]
                    break
        key = f"{head}:{len(msisdn)}"
        zones = self._by_key.get(key)
        if zones is None:
            unknown = self._unknown.get(key, 0)
            if unknown >= _UNKNOWN_TRIES:
                return self.default
            zones = self._parse(msisdn)
            if zones is self.default:  # unknown to the plan: a neighbour may still be known
                self._unknown[key] = unknown + 1
            else:
                self._by_key[key] = zones
        return zones

    def _nanp(self, msisdn: str) -> Zones:
        """A ``+1`` number's zones: its area code's (longest prefix of the zone data)."""
        area = msisdn[:4]
        zones = self._areas.get(area)
        if zones is not None:
            return zones
        for length in range(min(TIMEZONE_LONGEST_PREFIX, len(msisdn)), 0, -1):
            prefix = msisdn[:length]
            zones = self._areas.get(prefix)
            if zones is None and prefix in TIMEZONE_DATA:
                zones = self._areas[prefix] = self._sorted(TIMEZONE_DATA[prefix])
            if zones is not None:
                if area not in self._deep:  # no longer prefix splits the area: it decides
                    self._areas[area] = zones
                return zones
        return self.default

    def _sorted(self, zones: Sequence[str]) -> Zones:
        """One shared sorted tuple per zone set (so equal sets are one cache entry downstream)."""
        key = tuple(sorted(z for z in zones if z != UNKNOWN_TIMEZONE)) or self.default
        return self._tuples.setdefault(key, key)

    def _parse(self, msisdn: str) -> Zones:
        self.misses += 1
        try:
            found = time_zones_for_number(phonenumbers.parse("+" + msisdn))
        except phonenumbers.NumberParseException:
            return self.default
        return self._sorted(found)

    def override(self, name: str) -> Zones:
        """The zones of a row whose time-zone column says ``name`` (ConfigError if unknown)."""
        zones = self._by_key.get(name)
        if zones is None:
            zone(name)
            zones = self._by_key[name] = (name,)
        return zones


NEVER = math.inf
"""The opening of a row whose window never holds in all its zones at once."""


class WindowGate:
    """The per-row decision of one run: may this number be texted now, else when.

    Each zone set's state is computed once and kept until it changes (:meth:`SendWindow.
    next_change`), so a row costs the zone look-up (:class:`NumberZones`), one dictionary look-up
    and a comparison. ``now`` is given by the caller (the campaign's clock), never read here."""

    __slots__ = ("_states", "defaulted", "window", "zones")

    def __init__(self, window: SendWindow, zones: NumberZones) -> None:
        self.window = window
        self.zones = zones
        self._states: dict[int, tuple[float, float | None, Zones]] = {}
        self.defaulted = 0
        """Rows whose number had no known zone (they got ``zones.default``)."""

    def opening(self, msisdn: str, now: float, zone_name: str | None = None) -> float | None:
        """None when ``msisdn`` may be texted at ``now`` (unix seconds), else the unix time its
        window opens (:data:`NEVER` when it never does). ``zone_name`` (a time-zone column)
        overrides the numbering plan (ConfigError when it is no zone)."""
        if zone_name:
            zones = self.zones.override(zone_name)
        else:
            zones = self.zones(msisdn)
            if zones is self.zones.default:
                self.defaulted += 1
        # Keyed by identity: the look-up hands out one tuple per zone set, and hashing a long
        # tuple of names per row would cost more than the rest of the decision.
        state = self._states.get(id(zones))
        if state is None or now >= state[0]:
            state = self._states[id(zones)] = self._decide(zones, now)
        return state[1]

    def _decide(self, zones: Zones, now: float) -> tuple[float, float | None, Zones]:
        """(until when it holds, the opening or None when open, the zones: kept alive so that
        their identity is not reused)."""
        instant = datetime.fromtimestamp(now, UTC)
        is_open = self.window.is_open(zones, instant)
        change = self.window.next_change(zones, instant)
        if change is None:  # no change in the look-ahead: look again in a day
            return now + 86400.0, None if is_open else NEVER, zones
        until = change.timestamp()
        return until, None if is_open else until, zones


def describe(zones: Iterable[str]) -> str:
    """``America/New_York`` or ``Australia/Adelaide +7 more`` (for messages)."""
    names = list(zones)
    return names[0] if len(names) == 1 else f"{names[0]} +{len(names) - 1} more"
