"""The one error tree of giants.

Every failure a caller can see is one of four kinds, and clients and checkers depend
on telling them apart:

* ``LocalProtocolError``  -- the caller misused the API (our bug, or the user's).
* ``RemoteProtocolError`` -- the peer sent something illegal; close that peer only.
* ``DefiniteError``       -- the operation certainly did not happen (``NotLeader``,
  ``TxnAborted``, ``NotFound`` ...). A checker records it as ``fail``.
* ``IndefiniteError``     -- the operation may or may not have happened (timeout,
  connection lost). A checker records it as ``info``.

Broken invariants are ``assert`` statements and are never caught.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "GiantsError",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "FrameTooLarge",
    "UnknownMessage",
    "DefiniteError",
    "NotLeader",
    "Rejected",
    "TxnAborted",
    "NotFound",
    "Unavailable",
    "IndefiniteError",
    "Timeout",
    "ConnectionLost",
    "error_to_wire",
    "error_from_wire",
]


class GiantsError(Exception):
    """Root of every error raised by giants code."""


class ProtocolError(GiantsError):
    """A message or API call broke the protocol."""


class LocalProtocolError(ProtocolError):
    """The caller misused the API; nothing was sent and no state changed."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal (malformed frame, unknown tag, wrong types).

    The receiver drops that message (or closes that one connection) and keeps serving.
    """


class FrameTooLarge(RemoteProtocolError):
    """A length prefix announced a frame above the configured limit."""


class UnknownMessage(RemoteProtocolError):
    """A frame carried a message tag that no registered message type owns."""


class DefiniteError(GiantsError):
    """The operation certainly did not take effect. Safe to retry as a new operation."""

    code = "definite"

    def __init__(self, message: str = "", **detail: Any) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.detail = detail


class NotLeader(DefiniteError):
    """This node is not the leader; ``hint`` names the leader it believes in, if any."""

    code = "not_leader"

    def __init__(self, message: str = "", hint: str | None = None, **detail: Any) -> None:
        super().__init__(message or f"not leader (hint={hint})", hint=hint, **detail)
        self.hint = hint


class Rejected(DefiniteError):
    """The request was well-formed but refused (bad argument, precondition failed)."""

    code = "rejected"


class TxnAborted(DefiniteError):
    """The transaction aborted; none of its writes took effect."""

    code = "txn_aborted"


class NotFound(DefiniteError):
    """The named thing does not exist."""

    code = "not_found"


class Unavailable(DefiniteError):
    """The service refused the request before doing anything (overloaded, no quorum)."""

    code = "unavailable"


class IndefiniteError(GiantsError):
    """The operation may or may not have taken effect."""


class Timeout(IndefiniteError):
    """No answer arrived before the deadline."""


class ConnectionLost(IndefiniteError):
    """The connection broke while the request was in flight."""


_DEFINITE_BY_CODE: dict[str, type[DefiniteError]] = {
    cls.code: cls for cls in (DefiniteError, NotLeader, Rejected, TxnAborted, NotFound, Unavailable)
}


def error_to_wire(exc: DefiniteError) -> dict[str, Any]:
    """Encode a definite error as a plain msgpack-able dict for an error reply."""
    return {"code": exc.code, "message": exc.message, "detail": dict(exc.detail)}


def error_from_wire(data: dict[str, Any]) -> DefiniteError:
    """Rebuild the definite error a server sent; unknown codes become ``DefiniteError``.

    Raises ``RemoteProtocolError`` if ``data`` is not a dict of the expected shape.
    """
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        raise RemoteProtocolError(f"malformed error reply: {data!r}")
    cls = _DEFINITE_BY_CODE.get(data["code"], DefiniteError)
    detail = data.get("detail") or {}
    if not isinstance(detail, dict):
        detail = {}
    message = str(data.get("message", ""))
    if cls is NotLeader:
        return NotLeader(message, **detail)
    err = cls(message, **detail)
    return err
