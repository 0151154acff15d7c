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
import threading
import types
import typing
from collections.abc import Callable
from operator import attrgetter
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
    "fast_constructor",
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
        self._decoders: dict[type, Callable[[Any], Any]] = {}
        # Per class: msg -> [tag, *field values], nested messages left in place for
        # ``wire_default`` (msgpack's default hook) to turn into MESSAGE_EXT while packing.
        self._shallow: dict[type, Callable[[Any], list[Any]]] = {}
        self.wire_default: Callable[[Any], Any] = self._wire_default
        self._packers = threading.local()  # one reusable msgpack Packer per thread

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
        self._shallow[cls] = _shallow_encoder(tag, self._fields[cls])

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

    def shallow_wire(self, msg: Any) -> list[Any]:
        """``[tag, *fields]`` for ``msg`` with nested messages not yet converted: pack it
        with ``default=self.wire_default`` (the fast path of ``encode``). Raises
        ``LocalProtocolError`` if ``msg`` is not a registered message."""
        enc = self._shallow.get(type(msg))
        if enc is None:
            raise LocalProtocolError(f"{type(msg).__qualname__} is not a registered message")
        return enc(msg)

    def _wire_default(self, obj: Any) -> Any:
        """msgpack ``default`` hook: a nested message becomes a MESSAGE_EXT ext value."""
        enc = self._shallow.get(type(obj))
        if enc is None:
            raise TypeError(f"cannot encode {type(obj).__name__}")
        return msgpack.ExtType(
            MESSAGE_EXT, msgpack.packb(enc(obj), use_bin_type=True, default=self.wire_default))

    def pack(self, obj: Any) -> bytes:
        """``msgpack.packb(obj, use_bin_type=True, default=self.wire_default)``, with a
        Packer kept per thread (building one per call costs as much as packing a small
        message). Raises what ``packb`` raises; the Packer resets itself on error."""
        packer = getattr(self._packers, "packer", None)
        if packer is None:
            packer = self._packers.packer = msgpack.Packer(use_bin_type=True,
                                                           default=self.wire_default)
        data: bytes = packer.pack(obj)
        return data

    def encode(self, msg: Any) -> bytes:
        """msgpack bytes for ``msg``. Raises ``LocalProtocolError`` for unencodable data."""
        try:
            return self.pack(self.shallow_wire(msg))
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
        decoder = self._decoders.get(cls)
        if decoder is None:
            decoder = self._compile_decoder(cls)
        try:
            return decoder(raw)
        except RemoteProtocolError as exc:
            raise RemoteProtocolError(f"{raw[0]}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise RemoteProtocolError(f"{raw[0]}: invalid fields: {exc}") from None

    def _compile(self, cls: type) -> tuple[Validator, ...]:
        hints = get_type_hints(cls)
        validators = tuple(self._validator(hints[name]) for name in self._fields[cls])
        self._validators[cls] = validators
        return validators

    def _compile_decoder(self, cls: type) -> Callable[[Any], Any]:
        """Generate ``raw -> message`` for ``cls``: exact-type fields are checked inline,
        the rest through their validators, then the instance is built (see
        ``fast_constructor``). The same checks as the validators, minus call overhead."""
        validators = self._validators.get(cls) or self._compile(cls)
        n = len(validators)
        env: dict[str, Any] = {"RemoteProtocolError": RemoteProtocolError, "make": fast_constructor(cls)}
        lines = ["def decode(raw):",
                 f"    if len(raw) != {n + 1}:",
                 f"        raise RemoteProtocolError(f'expected {n} fields, got {{len(raw) - 1}}')"]
        if n:
            lines.append(f"    _, {', '.join(f'f{i}' for i in range(n))}{',' if n == 1 else ''} = raw")
        for i, v in enumerate(validators):
            exact = _EXACT_TYPES.get(v)
            if exact is not None:
                env[f"t{i}"] = exact[0]
                lines += [f"    if type(f{i}) is not t{i}:",
                          f"        raise RemoteProtocolError('expected {exact[1]}, got ' "
                          f"+ type(f{i}).__name__)"]
            else:
                env[f"v{i}"] = v
                lines.append(f"    f{i} = v{i}(f{i})")
        lines.append(f"    return make({', '.join(f'f{i}' for i in range(n))})")
        exec("\n".join(lines), env)
        decoder: Callable[[Any], Any] = env["decode"]
        self._decoders[cls] = decoder
        return decoder

    def _validator(self, tp: Any) -> Validator:  # a type switch
        if tp is Any or tp is object:
            return self._any
        if tp is type(None) or tp is None:
            return _none
        if tp is bool:
            return _bool
        if tp is int:
            return _int
        if tp is float:
            return _float
        if tp is str:
            return _str
        if tp is bytes:
            return _bytes
        if isinstance(tp, type) and (tp in self._tag_of or dataclasses.is_dataclass(tp)):
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


def _shallow_encoder(tag: str, names: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    if not names:
        return lambda msg: [tag]
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda msg: [tag, one(msg)]
    many = attrgetter(*names)
    return lambda msg: [tag, *many(msg)]


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


_none = _exact(type(None), "None")
_bool = _exact(bool, "bool")
_str = _exact(str, "str")

# Validators that only check ``type(x) is T``; generated decoders inline them.
_EXACT_TYPES: dict[Validator, tuple[type, str]] = {
    _none: (type(None), "None"), _bool: (bool, "bool"), _str: (str, "str"),
    _int: (int, "int"), _bytes: (bytes, "bytes"),
}


def fast_constructor(cls: type) -> Callable[..., Any]:
    """A callable equivalent to ``cls(*field_values)`` for a frozen slotted dataclass.

    A frozen dataclass's ``__init__`` assigns each field through
    ``object.__setattr__``, which dominates decoding small messages; this sets the slots
    through their descriptors instead. Classes with ``__post_init__``, fields with
    ``init=False`` or no slots get ``cls`` itself, so behaviour never differs.
    """
    fields = dataclasses.fields(cls)
    descriptors = [getattr(cls, f.name, None) for f in fields]
    if (hasattr(cls, "__post_init__") or any(not f.init for f in fields)
            or not all(isinstance(d, types.MemberDescriptorType) for d in descriptors)):
        return cls
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    args = ", ".join(f"a{i}" for i in range(len(fields)))
    body = "".join(f"    s{i}(o, a{i})\n" for i in range(len(fields)))
    for i, d in enumerate(descriptors):
        env[f"s{i}"] = d.__set__  # type: ignore[union-attr]
    exec(f"def make({args}):\n    o = new(cls)\n{body}    return o\n", env)
    make: Callable[..., Any] = env["make"]
    return make


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
    exact = _EXACT_TYPES.get(item)
    if exact is not None:  # list[int], list[bytes], ...: check in place, no per-item call
        tp, name = exact

        def check_exact(x: Any) -> Any:
            if not isinstance(x, (list, tuple)):
                raise RemoteProtocolError(f"expected array, got {type(x).__name__}")
            for v in x:
                if type(v) is not tp:
                    raise RemoteProtocolError(f"expected {name}, got {type(v).__name__}")
            return x if type(x) is kind else kind(x)

        return check_exact

    def check(x: Any) -> Any:
        if not isinstance(x, (list, tuple)):
            raise RemoteProtocolError(f"expected array, got {type(x).__name__}")
        return kind([item(v) for v in x])

    return check


def _fixed_tuple(items: list[Validator]) -> Validator:
    def check(x: Any) -> Any:
        if not isinstance(x, (list, tuple)) or len(x) != len(items):
            raise RemoteProtocolError(f"expected array of {len(items)}")
        return tuple(v(e) for v, e in zip(items, x, strict=True))

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
