"""Atomic-commitment checkers: all-or-nothing outcomes and no lost acknowledged writes.

For distributed transactions (two-phase commit, Gray 1978; Bernstein, Hadzilacos and
Goodman, "Concurrency Control and Recovery", ch. 7, the atomic commitment properties
AC1-AC5; SYSTEMS.md §18): every participant that decides reaches the same decision,
the decision matches the coordinator's and what the client was told, and nothing a
committed transaction wrote may be lost.

* ``check_all_or_nothing(outcomes, participants=, told=, decision=, recovered=)`` --
  ``outcomes`` maps each participant to its durable state per transaction: ``True`` /
  ``"committed"``, ``False`` / ``"aborted"``, ``"prepared"`` (voted yes, undecided) or
  ``"unknown"`` / ``None``. Problems: participants disagree (committed at one, aborted
  at another); a participant contradicts the coordinator's ``decision``; a transaction
  the client saw commit is not committed (or at least prepared, before recovery) at
  every participant in ``participants[txn]``; one the client saw abort committed
  somewhere; a committed transaction no client ran; and, once ``recovered=True`` (every
  crashed node is back and recovery has finished), any participant still undecided.
* ``check_no_lost_writes(final, committed_writes)`` -- ``final`` is one store's state,
  ``committed_writes`` the writes of the transactions it committed, in its commit
  order (``None`` deletes). The state must be exactly their replay: no committed write
  lost, none applied twice or out of order, nothing else visible.
* ``check_acked_writes(history, final)`` -- for a key-value ``History`` and a final
  read of every key after the run: every acknowledged write is visible unless a later
  acknowledged-or-possible write overwrote it. The final value of a key must come from a
  write (acknowledged, or indeterminate: ``info`` / never completed) that could be
  ordered after every acknowledged write of that key, i.e. that did not complete before
  any of them was invoked.

All return a list of human-readable problems; empty means the property holds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from giants.core.testing.history import History, Operation

__all__ = ["check_acked_writes", "check_all_or_nothing", "check_no_lost_writes",
           "normalize_outcome"]

_STATES = {True: "committed", False: "aborted", None: "unknown", "committed": "committed",
           "aborted": "aborted", "prepared": "prepared", "unknown": "unknown"}
_WRITES = frozenset({"write", "put", "delete", "cas"})


def normalize_outcome(value: Any) -> str:
    """``True``/``False``/``None`` or a state name -> committed/aborted/prepared/unknown.

    Raises ``ValueError`` for anything else.
    """
    try:
        return _STATES[value]
    except (KeyError, TypeError):
        raise ValueError(f"not a participant outcome: {value!r}") from None


def check_all_or_nothing(
    outcomes: Mapping[str, Mapping[Any, Any]],
    *,
    participants: Mapping[Any, Iterable[str]] | None = None,
    told: Mapping[Any, str] | None = None,
    decision: Mapping[Any, Any] | None = None,
    recovered: bool = False,
) -> list[str]:
    """See the module docstring. ``told`` and ``decision`` values take the same forms as
    outcomes (``unknown`` / ``None``: the client or coordinator does not know)."""
    problems: list[str] = []
    seen: dict[Hashable, dict[str, str]] = {}
    for participant, decided in outcomes.items():
        for txn, state in decided.items():
            seen.setdefault(txn, {})[participant] = normalize_outcome(state)
    for txn, per in sorted(seen.items(), key=lambda kv: repr(kv[0])):
        problems += _txn_problems(txn, per, told, decision, recovered)
    for txn, status in sorted((told or {}).items(), key=lambda kv: repr(kv[0])):
        problems += _told_problems(txn, normalize_outcome(status), seen.get(txn, {}),
                                   (participants or {}).get(txn, ()), recovered)
    return problems


def _where(per: Mapping[str, str], state: str) -> list[str]:
    return sorted(p for p, s in per.items() if s == state)


def _txn_problems(txn: Hashable, per: Mapping[str, str], told: Mapping[Any, str] | None,
                  decision: Mapping[Any, Any] | None, recovered: bool) -> list[str]:
    out = []
    committed, aborted = _where(per, "committed"), _where(per, "aborted")
    if committed and aborted:
        out.append(f"{txn}: participants disagree: committed at {committed}, "
                   f"aborted at {aborted}")
    if told is not None and txn not in told and committed:
        out.append(f"{txn}: committed at {committed} but no client ran it")
    decided = normalize_outcome(decision.get(txn)) if decision is not None else "unknown"
    if decided == "committed" and aborted:
        out.append(f"{txn}: the coordinator decided commit but {aborted} aborted")
    if decided == "aborted" and committed:
        out.append(f"{txn}: the coordinator decided abort but {committed} committed")
    undecided = _where(per, "prepared") + _where(per, "unknown")
    if recovered and undecided:
        out.append(f"{txn}: still undecided at {sorted(undecided)} after recovery")
    return out


def _told_problems(txn: Hashable, status: str, per: Mapping[str, str],
                   participants: Iterable[str], recovered: bool) -> list[str]:
    out = []
    if status == "committed":
        for p in sorted(participants):
            have = per.get(p)
            if have == "committed" or (have == "prepared" and not recovered):
                continue
            what = "no record" if have is None else have
            out.append(f"{txn}: the client saw commit but {p} has {what}"
                       " (a lost committed write)")
    elif status == "aborted" and _where(per, "committed"):
        out.append(f"{txn}: the client saw abort but it committed at "
                   f"{_where(per, 'committed')}")
    return out


def check_no_lost_writes(final: Mapping[Any, Any],
                         committed_writes: Sequence[tuple[Any, Mapping[Any, Any]]]
                         ) -> list[str]:
    """See the module docstring."""
    expected: dict[Hashable, Any] = {}
    for _txn, writes in committed_writes:
        for key, value in writes.items():
            if value is None:
                expected.pop(key, None)
            else:
                expected[key] = value
    actual = dict(final)
    if actual == expected:
        return []
    keys = sorted((k for k in set(actual) | set(expected) if actual.get(k) != expected.get(k)),
                  key=repr)
    return [f"state differs from the replay of committed writes at {len(keys)} keys, e.g. "
            + ", ".join(f"{k!r}: have {actual.get(k)!r}, replay gives {expected.get(k)!r}"
                        for k in keys[:3])]


def check_acked_writes(history: History | Iterable[Operation], final: Mapping[Any, Any],
                       *, initial: Any = None) -> list[str]:
    """See the module docstring. ``final`` maps key -> value read after the run (a key
    missing from ``final`` reads ``initial``); operations are put/write (value),
    delete (``None``) and cas (``(expected, new)``, a write of ``new`` unless its result
    was ``False``)."""
    ops = history.operations() if isinstance(history, History) else list(history)
    by_key: dict[Hashable, list[tuple[Operation, Any]]] = {}
    for op in ops:
        if op.f in _WRITES and op.status != "fail":
            if op.f == "cas" and op.status == "ok" and op.output is False:
                continue
            effect = None if op.f == "delete" else op.value[1] if op.f == "cas" else op.value
            by_key.setdefault(op.key, []).append((op, effect))
    problems = []
    for key in sorted(set(by_key) | set(final), key=repr):
        problem = _key_problem(key, final.get(key, initial), by_key.get(key, []), initial)
        if problem:
            problems.append(problem)
    return problems


def _key_problem(key: Hashable, value: Any, writes: list[tuple[Operation, Any]],
                 initial: Any) -> str | None:
    acked = [op for op, _ in writes if op.status == "ok"]
    candidates = [op for op, effect in writes if effect == value]
    for c in candidates:
        if all(a is c or c.complete_index is None or c.complete_index > a.invoke_index
               for a in acked):
            return None
    if not candidates and value == initial and not acked:
        return None
    if not acked:
        return f"key {key!r}: final value {value!r} was never written"
    last = max(acked, key=lambda op: op.invoke_index)
    if not candidates and value != initial:
        return (f"key {key!r}: final value {value!r} was never written "
                f"(last acknowledged write: {last.describe()})")
    return (f"key {key!r}: acknowledged write lost: final value {value!r} cannot follow "
            f"{last.describe()}")
