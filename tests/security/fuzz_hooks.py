"""Schemathesis hooks for tests/security/test_fuzz_api.py (loaded through ``SCHEMATHESIS_HOOKS``).

Long polls (``wait``, ``timeout`` up to 60 s) would spend the run's time budget waiting; any number above one
second is lowered to a quarter second before the call (and ``/wait`` without one gets a quarter second).
A revoke never names a real token: the run's own admin token, listed by ``GET /v1/tokens``, would otherwise be
revoked early and leave every later request a 401 (well formed, but testing nothing behind the guard). Everything else is sent as generated.
"""

from __future__ import annotations

import re
from typing import Any

import schemathesis

LONG_POLL = ("wait", "timeout")


def _short(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return value
    return 0.25 if number > 1 else value


UNKNOWN_TOKEN_ID = "0" * 12


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    params = case.path_parameters
    if isinstance(params, dict) and str(case.path).endswith("/revoke") and "token_id" in params:
        value = params["token_id"]
        if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{12}", value):
            params["token_id"] = UNKNOWN_TOKEN_ID
    if str(case.path).endswith("/wait"):  # its default timeout is 30 s
        if not isinstance(case.query, dict):
            case.query = {}
        case.query.setdefault("timeout", 0.25)
    if isinstance(case.query, dict):
        for name in LONG_POLL:
            if name in case.query:
                case.query[name] = _short(case.query[name])
    params = kwargs.get("params")
    if isinstance(params, dict):
        for name in LONG_POLL:
            if name in params:
                params[name] = _short(params[name])
