"""Linearizability checking: the Wing-Gong search with Lowe's memoisation.

A history is linearizable (Herlihy and Wing, TOPLAS 1990, section 2) if every operation
can be given a single instant between its invocation and its response such that the
operations, run one at a time in that order, give the results the clients saw.

The search is Wing and Gong's (JPDC 1993) in the form Lowe gives it ("Testing for
linearizability", CCPE 2017, section 3, as also used by Porcupine): the history is a
doubly linked list of call and return entries in recorded order. Walking the list, a
call whose operation the model accepts is *linearized* -- lifted out of the list with its
return -- and the search restarts at the head; reaching a return means that operation
should already have happened, so the last choice is undone. The configuration
``(set of linearized operations, model state)`` is memoised: a configuration seen before
leads to the same outcome and is not searched again.

Rules and simplifications:

* ``fail`` operations did not happen and are dropped.
* Indeterminate operations (``info``, or never completed) may take effect at any time
  after their invocation, or never: they have a call entry but no return, so the search
  may linearize them or leave them out. Indeterminate read-only ones are dropped.
* Key-value histories are checked key by key (P-compositionality, Horn and Kroening,
  FORTE 2015) with ``check_kv_linearizable``.
* The search is bounded by ``max_steps`` (deterministic, unlike a wall-clock limit). On
  exhaustion the result has ``ok=False, timed_out=True``: it is never reported as ok.

On failure the result names the key, the longest linearizable prefix the search found,
the model state after it, the operation whose response could not be explained there,
and the operations that were candidates to go next.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from giants.core.testing.history import History, Operation
from giants.core.testing.models import UNKNOWN, KVMap, Model, Register

__all__ = [
    "DEFAULT_MAX_STEPS",
    "LinearizabilityResult",
    "check_kv_linearizable",
    "check_linearizable",
]

# Search steps (list-entry visits) before giving up. A 100-operation per-key history of
# a correct store needs a few thousand; a hopeless one can need exponentially many.
DEFAULT_MAX_STEPS = 5_000_000
# Operations shown in an explanation's prefix before eliding the earlier ones.
EXPLAIN_PREFIX_OPS = 8


@dataclass(frozen=True)
class LinearizabilityResult:
    """The verdict. ``bool(result)`` is ``result.ok``; ``explain()`` is for humans."""

    ok: bool
    timed_out: bool = False
    key: Hashable = None
    failed_keys: tuple[Hashable, ...] = ()
    linearized: tuple[Operation, ...] = ()
    state: Any = None
    stuck: Operation | None = None
    candidates: tuple[Operation, ...] = ()
    operations: int = 0
    steps: int = 0
    model: str = ""
    partitioned: bool = field(default=False, compare=False)

    def __bool__(self) -> bool:
        return self.ok

    def explain(self) -> str:
        if self.ok:
            return f"linearizable: {self.operations} operations, {self.steps} search steps"
        where = f"key {self.key!r}: " if self.partitioned else ""
        if self.timed_out:
            return (f"{where}unknown: search budget exhausted after {self.steps} steps "
                    f"({self.operations} operations); not proven linearizable")
        lines = [f"{where}not linearizable ({self.model})"]
        shown = self.linearized[-EXPLAIN_PREFIX_OPS:]
        skipped = len(self.linearized) - len(shown)
        lines.append(f"  longest linearizable prefix: {len(self.linearized)} operations"
                     + (f" (last {len(shown)} shown)" if skipped else ""))
        lines.extend(f"    {op.describe()}" for op in shown)
        lines.append(f"  state after it: {self.state!r}")
        if self.stuck is not None:
            lines.append(f"  cannot be linearized: {self.stuck.describe()}")
        if self.candidates:
            lines.append("  none of the concurrent candidates fits:")
            lines.extend(f"    {op.describe()}" for op in self.candidates)
        if len(self.failed_keys) > 1:
            lines.append(f"  other failing keys: {list(self.failed_keys[1:])!r}")
        return "\n".join(lines)


def check_linearizable(
    history: History | Iterable[Operation],
    model: Model | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> LinearizabilityResult:
    """Check a whole history against one model (default: a ``Register`` starting at None)."""
    m: Model = model if model is not None else Register()
    ops = _ops(history)
    part = _Search(ops, m, max_steps).run()
    return _result(part, m, failed_keys=(), key=None, partitioned=False)


def check_kv_linearizable(
    history: History | Iterable[Operation],
    model: KVMap | None = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> LinearizabilityResult:
    """Check a key-value history key by key; ``max_steps`` bounds the whole check."""
    per_key: Model = (model if model is not None else KVMap()).key_model()
    by_key: dict[Hashable, list[Operation]] = {}
    for op in _ops(history):
        by_key.setdefault(op.key, []).append(op)
    budget, total_ops, total_steps = max_steps, 0, 0
    failures: list[tuple[Hashable, _Outcome]] = []
    for key, ops in by_key.items():
        part = _Search(ops, per_key, budget).run()
        budget -= part.steps
        total_ops += part.operations
        total_steps += part.steps
        if not part.ok:
            failures.append((key, part))
            if part.timed_out:
                break
    if not failures:
        return LinearizabilityResult(True, operations=total_ops, steps=total_steps,
                                     model=repr(model or KVMap()), partitioned=True)
    key, part = failures[0]
    # A definite violation outranks a budget exhaustion on another key.
    definite = [kp for kp in failures if not kp[1].timed_out]
    if definite:
        key, part = definite[0]
    return _result(part, model or KVMap(), tuple(k for k, _ in failures), key, True,
                   steps=total_steps)


def _ops(history: History | Iterable[Operation]) -> list[Operation]:
    return history.operations() if isinstance(history, History) else list(history)


def _result(part: _Outcome, model: Any, failed_keys: tuple[Hashable, ...], key: Hashable,
            partitioned: bool, steps: int | None = None) -> LinearizabilityResult:
    return LinearizabilityResult(
        ok=part.ok, timed_out=part.timed_out, key=key, failed_keys=failed_keys,
        linearized=part.linearized, state=part.state, stuck=part.stuck,
        candidates=part.candidates, operations=part.operations,
        steps=part.steps if steps is None else steps, model=repr(model),
        partitioned=partitioned,
    )


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    timed_out: bool
    steps: int
    operations: int
    linearized: tuple[Operation, ...] = ()
    state: Any = None
    stuck: Operation | None = None
    candidates: tuple[Operation, ...] = ()


class _Search:
    """One WGL search over one (sub-)history. Entry 0 is the head sentinel."""

    def __init__(self, ops: Sequence[Operation], model: Model, max_steps: int) -> None:
        kept = [op for op in ops if op.status != "fail"
                and not (op.indeterminate and op.f in model.read_only)]
        self.ops = kept
        self.model = model
        self.max_steps = max_steps
        self.det = [not op.indeterminate for op in kept]
        self.args = [(op.f, op.key, op.value, UNKNOWN if op.indeterminate else op.output)
                     for op in kept]
        points: list[tuple[int, bool, int]] = []   # (history index, is_call, op number)
        for n, op in enumerate(kept):
            points.append((op.invoke_index, True, n))
            if op.complete_index is not None and not op.indeterminate:
                assert op.complete_index > op.invoke_index, f"{op.describe()} ends before start"
                points.append((op.complete_index, False, n))
        points.sort()
        size = len(points) + 1
        self.is_call = [False] + [p[1] for p in points]
        self.opn = [-1] + [p[2] for p in points]
        self.nxt = list(range(1, size + 1))
        self.nxt[-1] = 0
        self.prv = [size - 1] + list(range(size - 1))
        self.ret = [0] * size   # call entry -> its return entry (0: none)
        call_of = [0] * len(kept)
        for e in range(1, size):
            if self.is_call[e]:
                call_of[self.opn[e]] = e
            else:
                self.ret[call_of[self.opn[e]]] = e

    def _lift(self, e: int) -> None:
        nxt, prv = self.nxt, self.prv
        nxt[prv[e]] = nxt[e]
        prv[nxt[e]] = prv[e]
        r = self.ret[e]
        if r:
            nxt[prv[r]] = nxt[r]
            prv[nxt[r]] = prv[r]

    def _unlift(self, e: int) -> None:
        nxt, prv = self.nxt, self.prv
        r = self.ret[e]
        if r:
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        nxt[prv[e]] = e
        prv[nxt[e]] = e

    def run(self) -> _Outcome:
        n_det = sum(self.det)
        nxt, is_call, opn, det, args = self.nxt, self.is_call, self.opn, self.det, self.args
        step = self.model.step
        state: Hashable = self.model.init()
        linearized, done = 0, 0
        stack: list[tuple[int, Hashable]] = []
        seen: set[tuple[int, Hashable]] = set()
        best: _Outcome | None = None
        steps = 0
        e = nxt[0]
        while done < n_det:
            steps += 1
            if steps > self.max_steps:
                return _Outcome(False, True, steps - 1, len(self.ops))
            assert e != 0, "reached the end of the list with determinate operations left"
            if is_call[e]:
                o = opn[e]
                legal, new_state = step(state, *args[o])
                if legal:
                    config = (linearized | (1 << o), new_state)
                    if config not in seen:
                        seen.add(config)
                        stack.append((e, state))
                        linearized, state = config
                        done += det[o]
                        self._lift(e)
                        e = nxt[0]
                        continue
                e = nxt[e]
                continue
            if best is None or len(stack) > len(best.linearized):
                best = self._failure_at(e, stack, state, steps)
            if not stack:
                assert best is not None
                return _Outcome(False, False, steps, len(self.ops), best.linearized,
                                best.state, best.stuck, best.candidates)
            e, state = stack.pop()
            o = opn[e]
            linearized ^= 1 << o
            done -= det[o]
            self._unlift(e)
            e = nxt[e]
        return _Outcome(True, False, steps, len(self.ops))

    def _failure_at(
        self, e: int, stack: list[tuple[int, Hashable]], state: Hashable, steps: int
    ) -> _Outcome:
        """Describe a dead end: return entry ``e`` reached with ``stack`` linearized."""
        prefix = tuple(self.ops[self.opn[c]] for c, _ in stack)
        candidates = []
        c = self.nxt[0]
        while c != e:
            if self.is_call[c]:
                candidates.append(self.ops[self.opn[c]])
            c = self.nxt[c]
        stuck = self.ops[self.opn[e]]
        return _Outcome(False, False, steps, len(self.ops), prefix, state, stuck,
                        tuple(op for op in candidates if op is not stuck))
