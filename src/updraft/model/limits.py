"""Shared input constraints: what any value from the network may be, declared once as ``Annotated`` types.

Why a value is refused here rather than later: anything that validates is stored, then read back on every
listing, scheduling pass and restart. A value that cannot make that round trip — ``1e999`` stored as null, a
400-digit quantity that overflows int64, a lone UTF-16 surrogate SQLite cannot encode — poisons every later
read. So the API edge only lets through values that are:

* finite numbers (``NaN`` and ``±inf`` refused; JSON's ``1e999`` parses as ``inf``), each within a range;
* integers within int64 (SQLite's integer, the fencing token's type);
* strings of valid Unicode (no lone surrogates) without NUL (neither execve nor Docker can carry one);
* names — nodes, label keys and values, tags, taint keys — from a small grammar without control characters,
  so no name can forge a line in a text log;
* collections of a capped size.

Grammar (documented in docs/security.md):

* node name: ``[A-Za-z0-9]`` then up to 252 of ``[A-Za-z0-9._-]``, ending alphanumeric (a DNS name, a host
  name, or ``edge_1``);
* label key: an optional DNS-subdomain prefix and ``/``, then a name of up to 63 ``[A-Za-z0-9._-]`` starting
  and ending alphanumeric (Kubernetes);
* label value: empty, or up to 63 ``[A-Za-z0-9._-]`` starting and ending alphanumeric (Kubernetes);
* tag: like a label value, 1 to 63 characters;
* environment variable name: 1 to 256 printable ASCII characters other than ``=`` and space.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic.json_schema import JsonDict

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_SECONDS = 10 * 365 * 24 * 3600.0
"""Ten years: the longest duration (timeout, period, delay) anything accepts."""
MAX_TIMESTAMP = 32503680000.0
"""Year 3000 in Unix seconds: the latest instant a report may carry."""

MAX_ENV = 256
MAX_ARGS = 1024
MAX_ARG_CHARS = 128 * 1024
MAX_ENV_VALUE_CHARS = 128 * 1024
MAX_LABELS = 64
MAX_TAGS = 64
MAX_TAINTS = 64
MAX_VOLUMES = 16
MAX_IMAGES = 4096
MAX_RUNNING = 4096
MAX_LOG_LINES = 10000
MAX_EXTENDED = 32
"""Extended resource names (``nvidia.com/gpu``) in one request or capacity."""
MAX_NAMES = 1024
"""A list of names in one request (label keys or taint keys to remove)."""

NODE_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$"
_NAME63 = r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?"
_DNS_PREFIX = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*"
LABEL_KEY_PATTERN = rf"^({_DNS_PREFIX}/)?{_NAME63}$"
LABEL_VALUE_PATTERN = rf"^({_NAME63})?$"
TAG_PATTERN = rf"^{_NAME63}$"
ENV_NAME_PATTERN = r"^[!-<>-~]{1,256}$"
TASK_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def check_unicode(value: str) -> str:
    """Refuse lone surrogates (not encodable as UTF-8, so not storable) and NUL (not passable to a process)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode (a lone surrogate at position {exc.start})") from None
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


def check_line(value: str) -> str:
    """:func:`check_unicode`, and no control characters (no line breaks, escapes or bidi overrides)."""
    check_unicode(value)
    for i, ch in enumerate(value):
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            raise ValueError(f"contains a control character (U+{ord(ch):04X} at position {i})")
    return value


# -- numbers -----------------------------------------------------------------------------------------------
Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A non-negative int64: a fencing token, an index, a cursor such as ``after=``."""
Finite = Annotated[float, Field(allow_inf_nan=False)]
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
"""A duration; add ``gt=0`` at the field when zero makes no sense."""
Timestamp = Annotated[float, Field(ge=0, le=MAX_TIMESTAMP, allow_inf_nan=False)]
"""Unix seconds, as an agent's clock reports them."""
Percent = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
"""A load percentage; above 100 when a node runs past its declared capacity."""

# -- strings -----------------------------------------------------------------------------------------------
Text = Annotated[str, AfterValidator(check_unicode)]
"""Free text (an env value, a command argument): any valid Unicode but NUL; line breaks allowed."""
Line = Annotated[str, AfterValidator(check_line)]
"""Text on one line: no control characters."""
NodeName = Annotated[str, Field(min_length=1, max_length=253, pattern=NODE_NAME_PATTERN)]
TaskId = Annotated[str, Field(min_length=1, max_length=128, pattern=TASK_ID_PATTERN)]
LabelKey = Annotated[str, Field(min_length=1, max_length=317, pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]
Tag = Annotated[str, Field(min_length=1, max_length=63, pattern=TAG_PATTERN)]
EnvName = Annotated[str, Field(min_length=1, max_length=256, pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[str, Field(max_length=MAX_ENV_VALUE_CHARS), AfterValidator(check_unicode)]
Arg = Annotated[str, Field(max_length=MAX_ARG_CHARS), AfterValidator(check_unicode)]
ImageName = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(check_line)]
"""An image name or digest as an agent reports it (the submit grammar lives in ``spec.IMAGE_REF``)."""

# -- quantities (documented in the OpenAPI; parsed and judged by model.quantity) ----------------------------
CPU_PATTERN = r"^[0-9]{1,19}([.][0-9]{1,9})?m?$"
MEMORY_PATTERN = r"^[0-9]{1,19}([.][0-9]{1,9})?(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$"
Quantity = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_line)]
"""A quantity as written (``"500m"``, ``" 1Gi "``): one line; its grammar is judged by model.quantity."""
CPU_DOC: JsonDict = {"pattern": CPU_PATTERN, "maxLength": 32, "examples": ["500m", "2"]}
MEMORY_DOC: JsonDict = {"pattern": MEMORY_PATTERN, "maxLength": 32, "examples": ["256Mi", "1Gi"]}

# -- collections -------------------------------------------------------------------------------------------
Labels = Annotated[dict[LabelKey, LabelValue], Field(max_length=MAX_LABELS)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
Env = Annotated[dict[EnvName, EnvValue], Field(max_length=MAX_ENV)]
Args = Annotated[list[Arg], Field(max_length=MAX_ARGS)]
Images = Annotated[list[ImageName], Field(max_length=MAX_IMAGES)]
OptionalLabelKey = Annotated[str, Field(max_length=317, pattern=rf"^$|{LABEL_KEY_PATTERN}")]
"""A label key or empty (a toleration's empty key tolerates every taint)."""
