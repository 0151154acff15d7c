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

Three sound reductions on top (each is argued where it is implemented):

* *forced reads* -- a read-only operation the state allows is linearized at once with no
  alternative tried: moving a read earlier never invalidates a linearization;
* *dominance* -- of two configurations with the same determinate operations and state,
  the one that has used fewer indeterminate operations has every move the other has;
* *useless indeterminate operations* -- an indeterminate operation immediately followed
  by one that would do the same without it is pruned (the sibling without it is tried).

Rules and simplifications:

* ``fail`` operations did not happen and are dropped.
* Indeterminate operations (``info``, or never completed) may take effect at any time
  after their invocation, or never: they have a call entry but no return, so the search
  may linearize them or leave them out. Indeterminate read-only ones are dropped.
* Key-value histories are checked key by key (P-compositionality, Horn and Kroening,
  FORTE 2015) with ``check_kv_linearizable``.
* The search is bounded by ``max_steps`` (deterministic, unlike a wall-clock limit). On
  exhaustion the result has ``ok=False, timed_out=True``: it is never reported as ok.
  Correct histories are fast (2,000 operations over 20 keys: ~0.1 s; all 2,000 on one
  key: ~1 s; see ``common/benchmarks/bench_checkers.py``). A history that is *not*
  linearizable costs more, since every order before the violation must be ruled out:
  long single-key histories with many ``info`` operations may exhaust the budget, which
  is why Jepsen-style tests spread operations over many keys.

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
DEFAULT_MAX_STEPS = 2_000_000
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


_NEVER = 1 << 62   # the completion index of an operation that never completed
# Entry kinds (see ``_Search``).
_RETURN, _READ, _DETERMINATE, _INDETERMINATE = 0, 1, 2, 3


class _Search:
    """One WGL search over one (sub-)history.

    The list holds every call and the returns of determinate operations, in recorded
    order (head sentinel 0); returns are also chained on their own (head ``self.rh``), so
    the first pending return -- the *boundary*: an operation that must be linearized
    before anything invoked after it -- is found in O(1). The candidates at a
    configuration are the calls before the boundary. They are tried in three passes:
    (0) determinate read-only ones, forced (see ``run``); (1) other determinate ones and
    *young* indeterminate ones (whose ``info`` was recorded after the boundary) in list
    order; (2) *old* indeterminate ones. An indeterminate operation usually took effect,
    if at all, close to its invocation, so trying young ones greedily finds
    linearizations fast, while deferring old ones makes the search prefer leaving them
    out, which is what makes the dominance pruning in ``_first_visit`` effective on
    histories that are not linearizable.
    """

    def __init__(self, ops: Sequence[Operation], model: Model, max_steps: int) -> None:
        kept = [op for op in ops if op.status != "fail"
                and not (op.indeterminate and op.f in model.read_only)]
        self.ops = kept
        self.model = model
        self.max_steps = max_steps
        self.det = [not op.indeterminate for op in kept]
        self.args = [(op.f, op.key, op.value, UNKNOWN if op.indeterminate else op.output)
                     for op in kept]
        points: list[tuple[int, bool, int]] = [(-1, False, -1)]   # (index, is_call, op)
        for n, op in enumerate(kept):
            points.append((op.invoke_index, True, n))
            if not op.indeterminate:
                assert op.complete_index is not None
                assert op.complete_index > op.invoke_index, f"{op.describe()} ends before start"
                points.append((op.complete_index, False, n))
        points.sort()
        size = len(points)
        self.rh = size   # head sentinel of the return chain
        self.hidx = [p[0] for p in points] + [_NEVER]   # (the return chain's sentinel)
        self.is_call = [p[1] for p in points]
        self.kind = [_kind(p[1], kept[p[2]], model) if p[2] >= 0 else _RETURN for p in points]
        self.opn = [p[2] for p in points]
        # For a call of an indeterminate op: where its info was recorded (young before it).
        self.soft = [_soft_index(kept[n]) if call else 0 for _, call, n in points]
        self.nxt = [0] * size
        self.prv = [0] * size
        self.rnxt = [0] * (size + 1)
        self.rprv = [0] * (size + 1)
        returns = [e for e in range(1, size) if not self.is_call[e]]
        for nxt, prv, chain in ((self.nxt, self.prv, list(range(size))),
                                (self.rnxt, self.rprv, [self.rh, *returns])):
            for a, b in zip(chain, [*chain[1:], chain[0]], strict=True):
                nxt[a], prv[b] = b, a
        self.ret = [0] * size   # call entry -> its return entry (0: none)
        call_of = [0] * len(kept)
        for e in range(1, size):
            if self.is_call[e]:
                call_of[self.opn[e]] = e
            else:
                self.ret[call_of[self.opn[e]]] = e

    def _lift(self, e: int) -> None:
        """Take call ``e`` and its return (from both chains) out; ``_unlift`` undoes it."""
        nxt, prv = self.nxt, self.prv
        nxt[prv[e]] = nxt[e]
        prv[nxt[e]] = prv[e]
        r = self.ret[e]
        if r:
            nxt[prv[r]] = nxt[r]
            prv[nxt[r]] = prv[r]
            rnxt, rprv = self.rnxt, self.rprv
            rnxt[rprv[r]] = rnxt[r]
            rprv[rnxt[r]] = rprv[r]

    def _unlift(self, e: int) -> None:
        nxt, prv = self.nxt, self.prv
        r = self.ret[e]
        if r:
            rnxt, rprv = self.rnxt, self.rprv
            rnxt[rprv[r]] = r
            rprv[rnxt[r]] = r
            nxt[prv[r]] = r
            prv[nxt[r]] = r
        nxt[prv[e]] = e
        prv[nxt[e]] = e

    def run(self) -> _Outcome:
        n_det = sum(self.det)
        nxt, rnxt, rh = self.nxt, self.rnxt, self.rh
        opn, kind, det, args, hidx, soft = (
            self.opn, self.kind, self.det, self.args, self.hidx, self.soft)
        step = self.model.step
        state: Hashable = self.model.init()
        linearized, pending, done = 0, 0, 0   # bitsets of determinate / indeterminate ops
        stack: list[tuple[int, Hashable, int]] = []   # (chosen entry, prior state, pass)
        seen: dict[tuple[int, Hashable], list[int]] = {}
        best: _Outcome | None = None
        steps, e, pass_, bound = 0, nxt[0], 0, hidx[rnxt[rh]]
        while done < n_det:
            steps += 1
            if steps > self.max_steps:
                return _Outcome(False, True, steps - 1, len(self.ops))
            k = kind[e]
            if k == _RETURN:
                if pass_ < 2:   # this pass reached the boundary: start the next one
                    e, pass_ = nxt[0], pass_ + 1
                    continue
                if best is None or len(stack) > len(best.linearized):
                    best = self._failure_at(e, stack, state, steps)
                if not stack:
                    return _Outcome(False, False, steps, len(self.ops), best.linearized,
                                    best.state, best.stuck, best.candidates)
                e, state, pass_ = stack.pop()
                o = opn[e]
                if det[o]:
                    linearized ^= 1 << o
                    done -= 1
                else:
                    pending ^= 1 << o
                self._unlift(e)
                bound = hidx[rnxt[rh]]
                # A forced read had no alternatives: undoing it exhausts its parent too.
                e, pass_ = (rnxt[rh], 2) if pass_ == 0 else (nxt[e], pass_)
                continue
            if pass_ == 0:
                wanted = k == _READ
            elif k == _INDETERMINATE:   # young ones in pass 1, old ones in pass 2
                wanted = (soft[e] > bound) == (pass_ == 1)
            else:
                wanted = k == _DETERMINATE and pass_ == 1
            if not wanted:
                e = nxt[e]
                continue
            o = opn[e]
            legal, new_state = step(state, *args[o])
            if not legal:
                e = nxt[e]
                continue
            lin = linearized | (1 << o) if det[o] else linearized
            pend = pending if det[o] else pending | (1 << o)
            if self._useful(stack, o, new_state) and _first_visit(seen, (lin, new_state), pend):
                stack.append((e, state, pass_))
                linearized, pending, state = lin, pend, new_state
                done += det[o]
                self._lift(e)
                e, pass_, bound = nxt[0], 0, hidx[rnxt[rh]]
            elif pass_ == 0:   # a forced read leads nowhere new: so does this configuration
                e, pass_ = rnxt[rh], 2
            else:
                e = nxt[e]
        return _Outcome(True, False, steps, len(self.ops))

    def _useful(self, stack: list[tuple[int, Hashable, int]], o: int, new_state: Hashable) -> bool:
        """False if the indeterminate op on top of the stack was useless for ``o``.

        If ``o`` gets the same result from the state before that op p, the configuration
        that skips p (where ``o`` is a candidate too) dominates this one.
        """
        if not stack or self.det[self.opn[stack[-1][0]]]:
            return True
        return self.model.step(stack[-1][1], *self.args[o]) != (True, new_state)

    def _failure_at(
        self, boundary: int, stack: list[tuple[int, Hashable, int]], state: Hashable,
        steps: int,
    ) -> _Outcome:
        """Describe a dead end: return entry ``boundary`` reached with ``stack`` linearized."""
        prefix = tuple(self.ops[self.opn[c]] for c, _, _ in stack)
        stuck = self.ops[self.opn[boundary]]
        candidates = []
        c = self.nxt[0]
        while c != boundary:
            if self.is_call[c] and self.ops[self.opn[c]] is not stuck:
                candidates.append(self.ops[self.opn[c]])
            c = self.nxt[c]
        return _Outcome(False, False, steps, len(self.ops), prefix, state, stuck,
                        tuple(candidates))


def _kind(is_call: bool, op: Operation, model: Model) -> int:
    if not is_call:
        return _RETURN
    if op.indeterminate:
        return _INDETERMINATE
    return _READ if op.f in model.read_only else _DETERMINATE


def _soft_index(op: Operation) -> int:
    return _NEVER if op.complete_index is None else op.complete_index


def _first_visit(seen: dict[tuple[int, Hashable], list[int]], config: tuple[int, Hashable],
                 pending: int) -> bool:
    """Record a configuration; False if an equal or dominating one was visited before.

    A configuration with the same determinate operations linearized and the same state,
    but a subset of the indeterminate ones, dominates: it has every continuation this
    one has (indeterminate operations never force a backtrack, they only offer moves).
    """
    subsets = seen.get(config)
    if subsets is None:
        seen[config] = [pending]
        return True
    for other in subsets:
        if other & ~pending == 0:
            return False
    subsets.append(pending)
    return True
