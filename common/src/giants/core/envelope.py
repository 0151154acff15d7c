"""Envelopes and the sans-I/O length-prefixed framer.

An ``Envelope`` carries one message between two addresses: ``source`` and ``target``
are node ids or client ids (strings), ``msg_id`` is unique per sender, and
``in_reply_to`` is the ``msg_id`` of the request a reply answers (``None`` for requests
and one-way messages). On the wire an envelope is the msgpack array
``[source, target, msg_id, in_reply_to, [tag, *fields]]`` inside a frame: a 4-byte
big-endian length followed by that many bytes.

``FrameDecoder`` is sans-I/O: feed it bytes as they arrive, take whole frames out.
``ErrorReply`` is the one reply every server may send instead of the expected one.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from giants.core.codec import DEFAULT_REGISTRY, MessageRegistry, fast_constructor, message
from giants.core.errors import (
    DefiniteError,
    FrameTooLarge,
    LocalProtocolError,
    RemoteProtocolError,
    error_from_wire,
    error_to_wire,
)

__all__ = [
    "Envelope",
    "ErrorReply",
    "MalformedEnvelope",
    "FrameDecoder",
    "frame",
    "encode_envelope",
    "encode_parts",
    "decode_envelope",
    "DEFAULT_MAX_FRAME_BYTES",
    "LENGTH_PREFIX",
]

# 64 MiB: above the largest chunk/snapshot piece any package sends in one frame, far
# below what would let one bad length prefix exhaust memory.
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
LENGTH_PREFIX = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class Envelope:
    source: str
    target: str
    msg_id: int
    in_reply_to: int | None
    body: Any


_make_envelope = fast_constructor(Envelope)


@message("core.error")
@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A definite failure or a protocol complaint, sent in place of a reply.

    ``kind`` is ``"definite"`` (``error`` is an ``error_to_wire`` dict) or ``"protocol"``
    (the request was malformed; ``error`` carries ``message``).
    """

    kind: str
    error: dict[str, Any]

    @classmethod
    def definite(cls, exc: DefiniteError) -> ErrorReply:
        return cls("definite", error_to_wire(exc))

    @classmethod
    def protocol(cls, text: str) -> ErrorReply:
        return cls("protocol", {"code": "protocol", "message": text})

    def exception(self) -> Exception:
        """The exception this reply stands for, to raise at the caller."""
        if self.kind == "definite":
            return error_from_wire(self.error)
        return RemoteProtocolError(str(self.error.get("message", "protocol error")))


class MalformedEnvelope(RemoteProtocolError):
    """An envelope whose header parsed but whose body did not (unknown tag, wrong types).

    Carries the header, so a server knows whom to answer with ``ErrorReply.protocol``.
    """

    def __init__(
        self, text: str, *, source: str, target: str, msg_id: int, in_reply_to: int | None
    ) -> None:
        super().__init__(text)
        self.source = source
        self.target = target
        self.msg_id = msg_id
        self.in_reply_to = in_reply_to


def encode_envelope(env: Envelope, registry: MessageRegistry = DEFAULT_REGISTRY) -> bytes:
    """msgpack bytes of ``env`` (no length prefix). Raises ``LocalProtocolError`` if the
    body is not a registered message or holds something msgpack cannot carry."""
    return encode_parts(env.source, env.target, env.msg_id, env.in_reply_to, env.body,
                        registry)


def encode_parts(source: str, target: str, msg_id: int, in_reply_to: int | None, body: Any,
                 registry: MessageRegistry = DEFAULT_REGISTRY) -> bytes:
    """``encode_envelope`` of the envelope these fields would make, without making it."""
    wire = registry.shallow_wire(body)
    try:
        return registry.pack([source, target, msg_id, in_reply_to, wire])
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"cannot encode {type(body).__qualname__}: {exc}") from exc


def decode_envelope(data: bytes, registry: MessageRegistry = DEFAULT_REGISTRY) -> Envelope:
    """The envelope in ``data``. Raises ``RemoteProtocolError`` for anything malformed:
    ``MalformedEnvelope`` (a subclass) when the header was readable but the body was not."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=msgpack.ExtType)
    except Exception as exc:
        raise RemoteProtocolError(f"undecodable envelope: {exc.__class__.__name__}") from None
    if not isinstance(raw, list) or len(raw) != 5:
        raise RemoteProtocolError("an envelope is an array of 5")
    source, target, msg_id, in_reply_to, body = raw
    if not isinstance(source, str) or not isinstance(target, str):
        raise RemoteProtocolError("envelope source and target must be strings")
    if type(msg_id) is not int or not (in_reply_to is None or type(in_reply_to) is int):
        raise RemoteProtocolError("envelope ids must be integers")
    try:
        decoded = registry.from_wire(body)
    except RemoteProtocolError as exc:
        raise MalformedEnvelope(
            str(exc), source=source, target=target, msg_id=msg_id, in_reply_to=in_reply_to
        ) from None
    env: Envelope = _make_envelope(source, target, msg_id, in_reply_to, decoded)
    return env


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte length prefix."""
    return LENGTH_PREFIX.pack(len(payload)) + payload


class FrameDecoder:
    """Splits a byte stream into frames. Sans-I/O: no sockets, no clocks.

    ``feed`` raises ``FrameTooLarge`` as soon as a prefix announces more than
    ``max_frame_bytes``; after that the stream is unusable and must be closed.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._broken = False

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        if self._broken:
            raise FrameTooLarge("stream already failed")
        self._buf += data
        frames: list[bytes] = []
        buf = self._buf
        pos = 0
        size = len(buf)
        while size - pos >= 4:
            (length,) = LENGTH_PREFIX.unpack_from(buf, pos)
            if length > self.max_frame_bytes:
                self._broken = True
                raise FrameTooLarge(f"frame of {length} bytes exceeds {self.max_frame_bytes}")
            end = pos + 4 + length
            if end > size:
                break
            frames.append(bytes(buf[pos + 4 : end]))
            pos = end
        if pos:
            del buf[:pos]
        return frames

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame (a truncated tail)."""
        return len(self._buf)
