"""Sequential specifications for the linearizability checker.

Herlihy and Wing (TOPLAS 1990, section 2) judge a concurrent history against a
*sequential specification*: what each operation returns when the operations run one at
a time. A model here is that specification as a small pure object:

* ``init()`` -- the initial state;
* ``step(state, f, key, value, output)`` -- apply operation ``f`` with argument
  ``value`` (on ``key``) to ``state``; returns ``(legal, new_state)`` where ``legal`` says
  whether ``output`` is what the specification returns. ``output`` is ``UNKNOWN`` for
  an indeterminate operation (``info`` or never completed): any result is acceptable, only
  its effect counts;
* ``read_only`` -- operation names that never change the state (an indeterminate one
  can be dropped before the search, since it neither constrains nor changes anything).

States are hashable (the checker memoises ``(linearized ops, state)`` pairs, after Lowe,
"Testing for linearizability", CCPE 2017, section 3). ``KVMap`` also offers
``key_model()``: by P-compositionality (Horn and Kroening, FORTE 2015) a map is
linearizable iff each key's sub-history is, so the checker can check key by key.

Operations (argument -> ok result):

* ``Register`` -- ``read``/``get``: ``None`` -> value; ``write``/``put``: v -> (ignored);
  ``delete``: ``None`` -> (ignored), value becomes ``None``; ``cas``: ``(expected, new)`` ->
  ``False`` if it did not swap, anything else if it did.
* ``KVMap`` -- the same operations, per key; an absent key reads ``None``.
* ``SetModel`` -- ``add``: x; ``read``: ``None`` -> frozenset of elements.
* ``Counter`` -- ``add``: n; ``read``: ``None`` -> the sum.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any, Final, Protocol, final

__all__ = ["UNKNOWN", "Counter", "KVMap", "Model", "Register", "SetModel"]


@final
class _Unknown:
    """The output of an indeterminate operation: it may have returned anything."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Final = _Unknown()


class Model(Protocol):
    """A sequential specification (see the module docstring)."""

    @property
    def read_only(self) -> frozenset[str]: ...

    def init(self) -> Hashable: ...

    def step(
        self, state: Any, f: str, key: Hashable, value: Any, output: Any
    ) -> tuple[bool, Hashable]: ...


_READS = frozenset({"read", "get"})
_WRITES = frozenset({"write", "put"})


class Register:
    """A single read/write/compare-and-set register (initially ``initial``)."""

    read_only: frozenset[str] = _READS

    def __init__(self, initial: Hashable = None) -> None:
        self.initial = initial

    def init(self) -> Hashable:
        return self.initial

    def step(
        self, state: Any, f: str, key: Hashable, value: Any, output: Any
    ) -> tuple[bool, Hashable]:
        """Raises ``ValueError`` for an operation a register does not have."""
        if f in _READS:
            return (output is UNKNOWN or output == state), state
        if f in _WRITES:
            return True, value
        if f == "delete":
            return True, None
        if f == "cas":
            expected, new = value
            if state == expected:
                return output is not False, new
            return (output is UNKNOWN or output is False), state
        raise ValueError(f"a register has no operation {f!r}")

    def __repr__(self) -> str:
        return f"Register(initial={self.initial!r})"


class KVMap:
    """A map of independent registers; absent keys read ``None``.

    As a whole-map model the state is a frozenset of ``(key, value)`` items (fine for
    small histories); ``key_model()`` is the per-key register the partitioned checker uses.
    """

    read_only: frozenset[str] = _READS

    def __init__(self) -> None:
        self._register = Register(None)

    def key_model(self) -> Register:
        return self._register

    def init(self) -> Hashable:
        return frozenset()

    def step(
        self, state: Any, f: str, key: Hashable, value: Any, output: Any
    ) -> tuple[bool, Hashable]:
        items = dict(state)
        legal, new = self._register.step(items.get(key), f, key, value, output)
        if new is None:
            items.pop(key, None)
        else:
            items[key] = new
        return legal, frozenset(items.items())

    def __repr__(self) -> str:
        return "KVMap()"


class SetModel:
    """A grow-only set: ``add`` x, ``read`` returns every element added so far."""

    read_only: frozenset[str] = frozenset({"read"})

    def init(self) -> Hashable:
        return frozenset()

    def step(
        self, state: Any, f: str, key: Hashable, value: Any, output: Any
    ) -> tuple[bool, Hashable]:
        if f == "add":
            return True, state | {value}
        if f == "read":
            return (output is UNKNOWN or frozenset(output) == state), state
        raise ValueError(f"a set has no operation {f!r}")

    def __repr__(self) -> str:
        return "SetModel()"


class Counter:
    """A counter: ``add`` n, ``read`` returns the sum (initially 0)."""

    read_only: frozenset[str] = frozenset({"read"})

    def init(self) -> Hashable:
        return 0

    def step(
        self, state: Any, f: str, key: Hashable, value: Any, output: Any
    ) -> tuple[bool, Hashable]:
        if f == "add":
            return True, state + value
        if f == "read":
            return (output is UNKNOWN or output == state), state
        raise ValueError(f"a counter has no operation {f!r}")

    def __repr__(self) -> str:
        return "Counter()"
