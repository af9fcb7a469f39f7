"""Kubernetes-style quantities (DESIGN.md, decision 7), parsed once into millicores and bytes.

Extended resources (``nvidia.com/gpu``) are whole counts, as in Kubernetes, named with a domain prefix so they
can never be mistaken for cpu or memory. The parsers are memoised: the same few quantity strings recur across
thousands of specs, and a spec caches its parsed values (``ResourceList.cpu_millis``) on top of that.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from updraft.errors import ValidationError

# Digit counts are bounded before any arithmetic: a 400-digit quantity is refused as text, never converted.
# Values are computed exactly (Decimal, not float) and must fit in int64, the store's integer.
_CPU = re.compile(r"^(\d{1,19}(?:\.\d{1,9})?)(m?)$")
_MEM = re.compile(r"^(\d{1,19}(?:\.\d{1,9})?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$")
INT64_MAX = 2**63 - 1
_MEM_FACTORS = {
    None: 1,
    "Ki": 1 << 10,
    "Mi": 1 << 20,
    "Gi": 1 << 30,
    "Ti": 1 << 40,
    "Pi": 1 << 50,
    "Ei": 1 << 60,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
}


_EXTENDED = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
_RESERVED_PREFIXES = ("kubernetes.io/", "requests.")


def check_extended_name(name: str) -> str | None:
    """Why ``name`` cannot be an extended resource name, or None. Kubernetes' rule: ``domain/name``."""
    if name.startswith(_RESERVED_PREFIXES) or len(name) > 253:
        return f"{name!r} is reserved or too long for an extended resource"
    if not _EXTENDED.match(name):
        return f"{name!r} is not a valid extended resource name (use a domain prefix, e.g. 'nvidia.com/gpu')"
    return None


@lru_cache(maxsize=4096, typed=True)
def parse_cpu(value: str | int | float, field: str = "cpu") -> int:
    """``"500m"`` → 500, ``"2"`` → 2000, ``0.5`` → 500 (millicores)."""
    text = _text(value)
    match = _CPU.match(text)
    if not match:
        raise ValidationError(f"{field}: invalid cpu quantity {_show(text)} (use e.g. '500m' or '2')", field=field)
    number, milli = Decimal(match.group(1)), match.group(2)
    millis = number if milli else number * 1000
    if millis != int(millis):
        raise ValidationError(f"{field}: cpu quantity {text!r} is finer than 1m", field=field)
    if millis > INT64_MAX:
        raise ValidationError(f"{field}: cpu quantity {text!r} is too large", field=field)
    return int(millis)


@lru_cache(maxsize=4096, typed=True)
def parse_memory(value: str | int, field: str = "memory") -> int:
    """``"256Mi"`` → 268435456 bytes; plain numbers are bytes."""
    text = _text(value)
    match = _MEM.match(text)
    if not match or match.group(2) == "m":
        raise ValidationError(
            f"{field}: invalid memory quantity {_show(text)} (use e.g. '256Mi', '1Gi' or bytes)", field=field
        )
    n = int(Decimal(match.group(1)) * _MEM_FACTORS[match.group(2)])
    if n > INT64_MAX:
        raise ValidationError(f"{field}: memory quantity {text!r} is too large", field=field)
    return n


def _text(value: str | int | float) -> str:
    if isinstance(value, float):  # 1e-05 -> "0.00001", so the pattern judges the digits; nan/inf fail it
        exact = Decimal(repr(value))
        return format(exact, "f") if exact.is_finite() else str(value)
    return str(value).strip()


def _show(text: str) -> str:
    """The offending text, shortened: an error message must not echo a megabyte back."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "…"


def format_cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_memory(n: int) -> str:
    for suffix, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)
