"""One error hierarchy (DESIGN.md, decision 5).

::

    UpdraftError                      500 internal
    ├── ValidationError               422 invalid          (bad spec, bad quantity, bad image ref)
    │   └── PayloadTooLarge           413 too_large
    ├── NotFound                      404 not_found        (unknown task or node)
    ├── Conflict                      409 conflict         (revision moved; illegal transition)
    │   └── StaleToken                409 stale_token      (fencing: a report from a replaced attempt)
    ├── Unauthorized                  401 unauthorized     (no credential, or not a valid one)
    ├── Forbidden                     403 forbidden        (a valid credential whose role may not do this)
    ├── Busy                          429 busy             (admission full: retry after ``retry_after`` s)
    ├── Unavailable                   503 unavailable      (store, Docker or registry not answering)
    │   └── TransportError            503 transport        (client side: no endpoint answered)
    └── ImageError                    422 image            (cannot pull, resolve or verify an image)

Each class has a stable ``code``. The server renders ``{code, message, details}``; the SDK rebuilds the
same class from ``code`` with :func:`from_payload` — never from the message text.
"""

from __future__ import annotations

from typing import Any, ClassVar


class UpdraftError(Exception):
    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def to_payload(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ValidationError(UpdraftError):
    code = "invalid"
    status = 422


class PayloadTooLarge(ValidationError):
    code = "too_large"
    status = 413


class NotFound(UpdraftError):
    code = "not_found"
    status = 404


class Conflict(UpdraftError):
    code = "conflict"
    status = 409


class StaleToken(Conflict):
    code = "stale_token"
    status = 409


class Unauthorized(UpdraftError):
    code = "unauthorized"
    status = 401


class Forbidden(UpdraftError):
    code = "forbidden"
    status = 403


class Busy(UpdraftError):
    """Backpressure: the server admits no more of this kind of work right now; ``retry_after`` says when to."""

    code = "busy"
    status = 429


class Unavailable(UpdraftError):
    code = "unavailable"
    status = 503


class TransportError(Unavailable):
    code = "transport"
    status = 503


class ImageError(UpdraftError):
    code = "image"
    status = 422


def _all_subclasses(cls: type[UpdraftError]) -> list[type[UpdraftError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


_BY_CODE: dict[str, type[UpdraftError]] = {c.code: c for c in _all_subclasses(UpdraftError)}


def from_payload(payload: dict[str, Any]) -> UpdraftError:
    """Rebuild the exception the server raised from its JSON body."""
    cls = _BY_CODE.get(str(payload.get("code")), UpdraftError)
    details = payload.get("details") or {}
    err = cls(str(payload.get("message", "")), **(details if isinstance(details, dict) else {}))
    return err
