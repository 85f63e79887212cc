"""The concert calendar: what a concert is, and how input becomes one (or an error).

Pure: no Redis, no clock of its own (``now`` is an argument). Times are kept as
timezone-aware datetimes; a concert given as local wall-clock time plus an IANA zone
is resolved here, once, so a DST change can never move a show. Wall-clock times
that do not exist (spring forward) or happen twice (fall back) are refused rather
than guessed.

Every problem raises ``InvalidInput`` with code ``invalid_concert`` and a message
that names the field and says what to send instead.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cluster.errors import InvalidInput

INVALID_CONCERT = "invalid_concert"
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
REGION_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_DURATION = timedelta(hours=24)
MAX_AUDIENCE = 100_000_000
MAX_LADDERS = 32
MAX_TITLE = 200
FIELDS = ("id", "title", "starts_at", "ends_at", "timezone", "expected_audience", "region",
          "live_ladders")


@dataclass(frozen=True)
class Concert:
    id: str
    title: str
    starts_at: datetime        # aware
    ends_at: datetime          # aware, after starts_at
    expected_audience: int     # > 0
    timezone: str | None = None  # IANA zone the times are shown in (None: as given)
    region: str | None = None
    live_ladders: int = 0      # live transcoding ladders the show needs

    @property
    def start_ts(self) -> float:
        return self.starts_at.timestamp()

    @property
    def end_ts(self) -> float:
        return self.ends_at.timestamp()

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["starts_at"] = self.starts_at.isoformat()
        d["ends_at"] = self.ends_at.isoformat()
        return d

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


def loads(raw: str | bytes) -> Concert:
    """A stored concert back from JSON (stored concerts were validated on the way in)."""
    d = json.loads(raw)
    return Concert(id=d["id"], title=d["title"], starts_at=datetime.fromisoformat(d["starts_at"]),
                   ends_at=datetime.fromisoformat(d["ends_at"]),
                   expected_audience=int(d["expected_audience"]), timezone=d.get("timezone"),
                   region=d.get("region"), live_ladders=int(d.get("live_ladders") or 0))


def new_id() -> str:
    return f"c-{secrets.token_hex(4)}"


def parse_concert(data: Any, *, now: datetime, concert_id: str | None = None) -> Concert:
    """Validate input (API body or CLI flags) into a Concert; raise invalid_concert."""
    if not isinstance(data, dict):
        raise _invalid("body must be a JSON object with title, starts_at, ends_at, "
                       "expected_audience")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise _invalid(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    problems: list[str] = []
    cid = concert_id or data.get("id") or new_id()
    if concert_id and data.get("id") not in (None, concert_id):
        problems.append(f"id: body says {data['id']!r} but the URL says {concert_id!r}")
    if not isinstance(cid, str) or not ID_PATTERN.match(cid):
        problems.append("id: 1-64 characters of A-Z a-z 0-9 _ . - starting with a letter or digit")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        problems.append(f"title: a non-empty string of at most {MAX_TITLE} characters")
    zone_name = data.get("timezone")
    zone = None
    if zone_name is not None:
        try:
            zone = ZoneInfo(zone_name) if isinstance(zone_name, str) and zone_name else None
        except (ZoneInfoNotFoundError, ValueError):
            zone = None
        if zone is None:
            problems.append(f"timezone: {zone_name!r} is not an IANA zone name "
                            "(e.g. Europe/Berlin, America/New_York, UTC)")
    starts = _parse_time("starts_at", data.get("starts_at"), zone, zone_name, problems)
    ends = _parse_time("ends_at", data.get("ends_at"), zone, zone_name, problems)
    audience = data.get("expected_audience")
    if isinstance(audience, bool) or not isinstance(audience, int):
        problems.append("expected_audience: a whole number of fans, at least 1")
    elif not 0 < audience <= MAX_AUDIENCE:
        problems.append(f"expected_audience: must be 1..{MAX_AUDIENCE:,}, got {audience}")
    ladders = data.get("live_ladders", 0)
    if ladders is None:
        ladders = 0
    if isinstance(ladders, bool) or not isinstance(ladders, int) or not 0 <= ladders <= MAX_LADDERS:
        problems.append(f"live_ladders: a whole number 0..{MAX_LADDERS}")
    region = data.get("region")
    if region is not None and (not isinstance(region, str) or not REGION_PATTERN.match(region)):
        problems.append("region: lower-case letters, digits and '-', e.g. eu-west-1")
    if starts and ends:
        if ends <= starts:
            problems.append(f"ends_at ({ends.isoformat()}) must be after starts_at "
                            f"({starts.isoformat()})")
        elif ends - starts > MAX_DURATION:
            hours = (ends - starts).total_seconds() / 3600
            problems.append(f"the concert lasts {hours:.1f} h; at most "
                            f"{MAX_DURATION.total_seconds() / 3600:.0f} h (check the dates, or "
                            "split a festival into days)")
        elif ends <= now:
            problems.append(f"the concert ended at {ends.isoformat()}, which is in the past; "
                            "there is nothing to plan")
    if problems:
        raise _invalid("; ".join(problems))
    return Concert(id=cid, title=title.strip(), starts_at=starts, ends_at=ends,
                   expected_audience=audience, timezone=zone_name, region=region,
                   live_ladders=ladders)


def merge(existing: Concert, changes: dict[str, Any]) -> dict[str, Any]:
    """The input dict for an update: the stored concert with ``changes`` laid over it."""
    base = existing.to_json()
    if "timezone" in changes and ("starts_at" not in changes or "ends_at" not in changes):
        # Moving a concert to another zone keeps the instants; re-render them there.
        zone = changes["timezone"]
        try:
            tz = ZoneInfo(zone) if zone else None
        except (ZoneInfoNotFoundError, ValueError):
            tz = None
        if tz is not None:
            base["starts_at"] = existing.starts_at.astimezone(tz).isoformat()
            base["ends_at"] = existing.ends_at.astimezone(tz).isoformat()
    return {k: v for k, v in {**base, **changes}.items() if k in FIELDS}


def in_zone(concert: Concert) -> Concert:
    """The concert with its times rendered in its own zone (for display)."""
    if not concert.timezone:
        return concert
    tz = ZoneInfo(concert.timezone)
    return replace(concert, starts_at=concert.starts_at.astimezone(tz),
                   ends_at=concert.ends_at.astimezone(tz))


def parse_instant(value: str, zone: str | None = None) -> datetime:
    """An aware datetime from ISO 8601 (offset or Z), or naive local time in ``zone``."""
    problems: list[str] = []
    tz = ZoneInfo(zone) if zone else None
    out = _parse_time("time", value, tz, zone, problems)
    if problems:
        raise InvalidInput("; ".join(problems), code="invalid_time")
    return out


def _parse_time(field: str, value: Any, zone: ZoneInfo | None, zone_name: str | None,
                problems: list[str]) -> datetime | None:
    if not isinstance(value, str) or not value:
        problems.append(f"{field}: an ISO 8601 time, e.g. 2026-07-01T20:00:00+02:00")
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        problems.append(f"{field}: {value!r} is not ISO 8601 (e.g. 2026-07-01T20:00:00+02:00)")
        return None
    if dt.tzinfo is None:
        if zone is None:
            problems.append(f"{field}: {value!r} has no UTC offset; add one "
                            "(e.g. +02:00 or Z) or send a timezone field")
            return None
        return _localize(field, dt, zone, zone_name, problems)
    if zone is not None:
        # UTC plus a display zone is a normal thing to send; any other offset that
        # disagrees with the zone is most likely a summer/winter-time slip.
        expected = dt.astimezone(zone).utcoffset()
        if dt.utcoffset() not in (expected, timedelta(0)):
            problems.append(f"{field}: offset {dt.strftime('%z')} does not match {zone_name} at "
                            f"that time ({dt.astimezone(zone).strftime('%z')}); drop the offset "
                            "or fix it")
            return None
        return dt.astimezone(zone)
    return dt


def _localize(field: str, naive: datetime, zone: ZoneInfo, zone_name: str | None,
              problems: list[str]) -> datetime | None:
    first, second = naive.replace(tzinfo=zone, fold=0), naive.replace(tzinfo=zone, fold=1)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive:
        problems.append(f"{field}: {naive.isoformat()} does not exist in {zone_name} (the clocks "
                        "jump forward then); pick a time outside the gap")
        return None
    if first.utcoffset() != second.utcoffset():
        problems.append(f"{field}: {naive.isoformat()} happens twice in {zone_name} (the clocks go "
                        f"back then); add the offset: {first.strftime('%z')} for the first, "
                        f"{second.strftime('%z')} for the second")
        return None
    return first


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, code=INVALID_CONCERT)
