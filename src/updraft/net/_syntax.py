"""The small text formats of server lines: nginx durations and base URLs."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from updraft.errors import ValidationError

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")


def parse_duration(text: str) -> float:
    """nginx time syntax: ``10``, ``5s``, ``500ms``, ``1m30s``, ``2h``; a bare number means seconds.

    Fractions (``1.5s``) are accepted too, which nginx does not, because sub-second ``fail_timeout``
    values are useful in tests and benchmarks.
    """
    text = text.strip()
    if not text:
        raise ValidationError("empty duration")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if not m:
            raise ValidationError(f"bad duration {text!r}", value=text)
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
        pos = m.end()
    return total


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`: ``5s``, ``250ms``, or a plain decimal in seconds."""
    ms = round(seconds * 1000)
    if abs(ms - seconds * 1000) < 1e-6:
        return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
    return f"{seconds:.9f}".rstrip("0") + "s"


def normalise_url(url: str) -> str:
    """``a:8080`` → ``http://a:8080``; strips a trailing slash so paths join cleanly."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"bad server URL {url!r}", url=url)
    return url.rstrip("/")
