"""Typed wire messages and their msgpack encoding.

A message type is a ``@final`` frozen slotted dataclass registered under a short tag::

    @message("raft.vote")
    @dataclass(frozen=True, slots=True)
    class RequestVote:
        term: int
        candidate: str

On the wire a message is the msgpack array ``[tag, field1, field2, ...]``; a field that
is itself a registered message is nested as such an array, marked by msgpack ext type
``MESSAGE_EXT``. Decoding validates every field against its annotation (int, float,
str, bytes, bool, None, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``,
nested messages, ``Any``), so a peer sending wrong types gets a
``RemoteProtocolError`` instead of poisoning a core. Tuples decode as tuples, lists as
lists. Registries are explicit objects; ``DEFAULT_REGISTRY`` is the one that
``@message`` without arguments uses, shared by every package (tags must be unique, so
packages prefix them with their name).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

import msgpack

from giants.core.errors import LocalProtocolError, RemoteProtocolError, UnknownMessage

__all__ = [
    "MESSAGE_EXT",
    "MessageRegistry",
    "DEFAULT_REGISTRY",
    "message",
    "encode",
    "decode",
    "to_wire",
    "from_wire",
]

MESSAGE_EXT = 1
T = TypeVar("T")
Validator = Callable[[Any], Any]


class MessageRegistry:
    """Maps tags to message classes and back, with per-class compiled validators."""

    def __init__(self) -> None:
        self._by_tag: dict[str, type] = {}
        self._tag_of: dict[type, str] = {}
        self._fields: dict[type, tuple[str, ...]] = {}
        self._validators: dict[type, tuple[Validator, ...]] = {}

    def register(self, tag: str, cls: type) -> None:
        """Register ``cls`` under ``tag``.

        Raises ``LocalProtocolError`` if the tag is taken by another class or ``cls`` is
        not a dataclass.
        """
        if not dataclasses.is_dataclass(cls):
            raise LocalProtocolError(f"{cls!r} is not a dataclass")
        other = self._by_tag.get(tag)
        if other is not None and other is not cls:
            if f"{other.__module__}.{other.__qualname__}" != f"{cls.__module__}.{cls.__qualname__}":
                raise LocalProtocolError(f"message tag {tag!r} already used by {other!r}")
        self._by_tag[tag] = cls
        self._tag_of[cls] = tag
        self._fields[cls] = tuple(f.name for f in dataclasses.fields(cls))

    def tag_of(self, cls: type) -> str:
        try:
            return self._tag_of[cls]
        except KeyError:
            raise LocalProtocolError(f"{cls.__qualname__} is not a registered message") from None

    def is_message(self, obj: Any) -> bool:
        return type(obj) in self._tag_of

    def known_tags(self) -> list[str]:
        return sorted(self._by_tag)

    # -- encoding ---------------------------------------------------------------------

    def to_wire(self, msg: Any) -> list[Any]:
        """The msgpack-ready array ``[tag, *fields]`` for ``msg``."""
        cls = type(msg)
        tag = self.tag_of(cls)
        return [tag, *(self._plain(getattr(msg, name)) for name in self._fields[cls])]

    def _plain(self, value: Any) -> Any:
        if type(value) in self._tag_of:
            return msgpack.ExtType(MESSAGE_EXT, self.encode(value))
        if isinstance(value, (list, tuple)):
            return [self._plain(v) for v in value]
        if isinstance(value, dict):
            return {k: self._plain(v) for k, v in value.items()}
        return value

    def encode(self, msg: Any) -> bytes:
        """msgpack bytes for ``msg``. Raises ``LocalProtocolError`` for unencodable data."""
        try:
            return msgpack.packb(self.to_wire(msg), use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"cannot encode {type(msg).__qualname__}: {exc}") from exc

    # -- decoding ---------------------------------------------------------------------

    def decode(self, data: bytes) -> Any:
        """The message encoded in ``data``.

        Raises ``RemoteProtocolError`` (``UnknownMessage`` for an unknown tag) for
        anything that is not a well-typed registered message. Never raises anything else.
        """
        try:
            raw = msgpack.unpackb(data, raw=False, ext_hook=_keep_ext, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types
            raise RemoteProtocolError(f"undecodable frame: {exc.__class__.__name__}: {exc}") from None
        return self.from_wire(raw)

    def from_wire(self, raw: Any) -> Any:
        """Build a message from its ``[tag, *fields]`` array (see ``decode``)."""
        if not isinstance(raw, (list, tuple)) or not raw or not isinstance(raw[0], str):
            raise RemoteProtocolError("a message must be an array starting with its tag")
        cls = self._by_tag.get(raw[0])
        if cls is None:
            raise UnknownMessage(f"unknown message tag {raw[0]!r}")
        validators = self._validators.get(cls)
        if validators is None:
            validators = self._compile(cls)
        if len(raw) - 1 != len(validators):
            raise RemoteProtocolError(
                f"{raw[0]}: expected {len(validators)} fields, got {len(raw) - 1}"
            )
        try:
            values = [v(x) for v, x in zip(validators, raw[1:])]
            return cls(*values)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{raw[0]}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise RemoteProtocolError(f"{raw[0]}: invalid fields: {exc}") from None

    def _compile(self, cls: type) -> tuple[Validator, ...]:
        hints = get_type_hints(cls)
        validators = tuple(self._validator(hints[name]) for name in self._fields[cls])
        self._validators[cls] = validators
        return validators

    def _validator(self, tp: Any) -> Validator:  # noqa: C901 - a type switch
        if tp is Any or tp is object:
            return self._any
        if tp is type(None) or tp is None:
            return _exact(type(None), "None")
        if tp is bool:
            return _exact(bool, "bool")
        if tp is int:
            return _int
        if tp is float:
            return _float
        if tp is str:
            return _exact(str, "str")
        if tp is bytes:
            return _bytes
        if isinstance(tp, type) and tp in self._tag_of or (
            isinstance(tp, type) and dataclasses.is_dataclass(tp)
        ):
            return self._nested(tp)
        origin = get_origin(tp)
        args = get_args(tp)
        if origin in (typing.Union, types.UnionType):
            subs = [self._validator(a) for a in args]
            return _union(subs)
        if origin is typing.Literal:
            allowed = set(args)
            return _literal(allowed)
        if origin is list:
            item = self._validator(args[0]) if args else self._any
            return _seq(item, list)
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return _seq(self._validator(args[0]), tuple)
            if not args:
                return _seq(self._any, tuple)
            return _fixed_tuple([self._validator(a) for a in args])
        if origin is dict:
            kv = self._validator(args[0]) if args else self._any
            vv = self._validator(args[1]) if args else self._any
            return _mapping(kv, vv)
        if origin in (frozenset, set):
            item = self._validator(args[0]) if args else self._any
            return _seq(item, origin)
        raise LocalProtocolError(f"unsupported field type in a message: {tp!r}")

    def _nested(self, tp: type) -> Validator:
        def check(x: Any) -> Any:
            if isinstance(x, msgpack.ExtType) and x.code == MESSAGE_EXT:
                value = self.decode(x.data)
                if not isinstance(value, tp):
                    raise RemoteProtocolError(f"expected {tp.__name__}, got {type(value).__name__}")
                return value
            raise RemoteProtocolError(f"expected nested {tp.__name__}")

        return check

    def _any(self, x: Any) -> Any:
        if isinstance(x, msgpack.ExtType):
            if x.code == MESSAGE_EXT:
                return self.decode(x.data)
            raise RemoteProtocolError(f"unknown ext type {x.code}")
        if isinstance(x, list):
            return [self._any(v) for v in x]
        if isinstance(x, dict):
            return {self._any(k): self._any(v) for k, v in x.items()}
        return x


def _keep_ext(code: int, data: bytes) -> msgpack.ExtType:
    return msgpack.ExtType(code, data)


def _exact(tp: type, name: str) -> Validator:
    def check(x: Any) -> Any:
        if type(x) is not tp:
            raise RemoteProtocolError(f"expected {name}, got {type(x).__name__}")
        return x

    return check


def _int(x: Any) -> int:
    if type(x) is not int:
        raise RemoteProtocolError(f"expected int, got {type(x).__name__}")
    return x


def _float(x: Any) -> float:
    if type(x) is float:
        return x
    if type(x) is int:
        return float(x)
    raise RemoteProtocolError(f"expected float, got {type(x).__name__}")


def _bytes(x: Any) -> bytes:
    if type(x) is bytes:
        return x
    raise RemoteProtocolError(f"expected bytes, got {type(x).__name__}")


def _union(subs: list[Validator]) -> Validator:
    def check(x: Any) -> Any:
        errors = []
        for sub in subs:
            try:
                return sub(x)
            except RemoteProtocolError as exc:
                errors.append(str(exc))
        raise RemoteProtocolError(" / ".join(errors))

    return check


def _literal(allowed: set[Any]) -> Validator:
    def check(x: Any) -> Any:
        if x not in allowed:
            raise RemoteProtocolError(f"expected one of {sorted(map(repr, allowed))}, got {x!r}")
        return x

    return check


def _seq(item: Validator, kind: Callable[[Any], Any]) -> Validator:
    def check(x: Any) -> Any:
        if not isinstance(x, (list, tuple)):
            raise RemoteProtocolError(f"expected array, got {type(x).__name__}")
        return kind(item(v) for v in x)

    return check


def _fixed_tuple(items: list[Validator]) -> Validator:
    def check(x: Any) -> Any:
        if not isinstance(x, (list, tuple)) or len(x) != len(items):
            raise RemoteProtocolError(f"expected array of {len(items)}")
        return tuple(v(e) for v, e in zip(items, x))

    return check


def _mapping(kv: Validator, vv: Validator) -> Validator:
    def check(x: Any) -> Any:
        if not isinstance(x, dict):
            raise RemoteProtocolError(f"expected map, got {type(x).__name__}")
        return {kv(k): vv(v) for k, v in x.items()}

    return check


DEFAULT_REGISTRY = MessageRegistry()


def message(tag: str, registry: MessageRegistry | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a frozen dataclass as a wire message under ``tag``."""

    def wrap(cls: type[T]) -> type[T]:
        (registry or DEFAULT_REGISTRY).register(tag, cls)
        return typing.final(cls)

    return wrap


def encode(msg: Any) -> bytes:
    """Encode with the default registry."""
    return DEFAULT_REGISTRY.encode(msg)


def decode(data: bytes) -> Any:
    """Decode with the default registry (see ``MessageRegistry.decode``)."""
    return DEFAULT_REGISTRY.decode(data)


def to_wire(msg: Any) -> list[Any]:
    return DEFAULT_REGISTRY.to_wire(msg)


def from_wire(raw: Any) -> Any:
    return DEFAULT_REGISTRY.from_wire(raw)
