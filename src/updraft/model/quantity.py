"""Kubernetes-style quantities (DESIGN.md, decision 7), parsed once into millicores and bytes."""

from __future__ import annotations

import re

from updraft.errors import ValidationError

_CPU = re.compile(r"^(\d+(?:\.\d+)?)(m?)$")
_MEM = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E|m)?$")
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


def parse_cpu(value: str | int | float, field: str = "cpu") -> int:
    """``"500m"`` → 500, ``"2"`` → 2000, ``0.5`` → 500 (millicores)."""
    text = str(value).strip()
    match = _CPU.match(text)
    if not match:
        raise ValidationError(f"{field}: invalid cpu quantity {text!r} (use e.g. '500m' or '2')", field=field)
    number, milli = float(match.group(1)), match.group(2)
    millis = number if milli else number * 1000
    if millis != int(millis):
        raise ValidationError(f"{field}: cpu quantity {text!r} is finer than 1m", field=field)
    return int(millis)


def parse_memory(value: str | int, field: str = "memory") -> int:
    """``"256Mi"`` → 268435456 bytes; plain numbers are bytes."""
    text = str(value).strip()
    match = _MEM.match(text)
    if not match or match.group(2) == "m":
        raise ValidationError(
            f"{field}: invalid memory quantity {text!r} (use e.g. '256Mi', '1Gi' or bytes)", field=field
        )
    return int(float(match.group(1)) * _MEM_FACTORS[match.group(2)])


def format_cpu(millis: int) -> str:
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def format_memory(n: int) -> str:
    for suffix, factor in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)
