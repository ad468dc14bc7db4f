"""Portal-time helpers: parse a ``+03:00`` offset, format ISO 8601 with it, parse filter datetimes."""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["FastFormatter", "format_ts", "parse_datetime", "parse_offset"]

_OFFSET_RE = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2}):?(\d{2})?$")


def parse_offset(value: str | dt.tzinfo) -> dt.timezone:
    """``"+03:00"`` / ``"-0530"`` / ``"UTC"`` → a fixed-offset timezone."""
    if isinstance(value, dt.timezone):
        return value
    if isinstance(value, dt.tzinfo):
        offset = dt.datetime.now(value).utcoffset() or dt.timedelta(0)
        return dt.timezone(offset)
    text = value.strip()
    if text.upper() in ("Z", "UTC", "GMT", ""):
        return dt.UTC
    match = _OFFSET_RE.match(text)
    if not match:
        raise ValueError(f"unsupported timezone offset {value!r}; use e.g. '+03:00'")
    sign = -1 if match.group(1) == "-" else 1
    delta = dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0))
    return dt.timezone(sign * delta)


def format_ts(epoch: float, tz: dt.timezone) -> str:
    """Unix seconds → ``YYYY-MM-DDThh:mm:ss±hh:mm`` in the portal's offset (whole seconds)."""
    return dt.datetime.fromtimestamp(int(epoch), tz).isoformat()


def parse_datetime(value: object, tz: dt.timezone) -> float | None:
    """A filter or field value → unix seconds; naive values are portal time; ``None`` if unparseable.

    Accepts ISO 8601 with any offset (``Z`` too), ``YYYY-MM-DD hh:mm:ss``, a date alone, and
    Bitrix's own ``DD.MM.YYYY[ hh:mm:ss]`` site format.
    """
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    parsed: dt.datetime | None = None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y"):
            try:
                parsed = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.timestamp()


class FastFormatter:
    """``format_ts`` for bulk generation: caches the date part per day (5x faster than isoformat)."""

    def __init__(self, tz: dt.timezone) -> None:
        self.tz = tz
        offset = tz.utcoffset(None)
        self.offset = int(offset.total_seconds())
        self.suffix = format_ts(0, tz)[19:]
        self.days: dict[int, str] = {}

    def __call__(self, epoch: float) -> str:
        local = int(epoch) + self.offset
        day, sec = divmod(local, 86400)
        date = self.days.get(day)
        if date is None:
            date = dt.datetime.fromtimestamp(day * 86400 - self.offset, self.tz).strftime("%Y-%m-%dT")
            self.days[day] = date
        hour, rest = divmod(sec, 3600)
        return f"{date}{hour:02d}:{rest // 60:02d}:{rest % 60:02d}{self.suffix}"
