"""Atomic-commitment checkers: all-or-nothing outcomes and no lost committed writes.

For distributed transactions (two-phase commit, Gray 1978; SYSTEMS.md §18): every
participant of a transaction must reach the same outcome, the outcome must match what
the client was told, and nothing a committed transaction wrote may be lost.

* ``check_all_or_nothing(outcomes, participants=, told=)`` -- ``outcomes`` maps each
  participant to what it durably decided per transaction (True committed, False
  aborted). Problems: participants disagree; a transaction the client saw commit is not
  committed at every participant in ``participants[txn]``; one the client saw abort
  committed somewhere; a committed transaction no client ran.
* ``check_no_lost_writes(final, committed_writes)`` -- ``final`` is one store's state,
  ``committed_writes`` the writes of the transactions it committed, in its commit
  order (``None`` deletes). The state must be exactly their replay: no committed write
  lost, none applied twice or out of order, nothing else visible.

Both return a list of human-readable problems; empty means the property holds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["check_all_or_nothing", "check_no_lost_writes"]


def check_all_or_nothing(
    outcomes: Mapping[str, Mapping[Any, bool]],
    *,
    participants: Mapping[Any, Iterable[str]] | None = None,
    told: Mapping[Any, str] | None = None,
) -> list[str]:
    """See the module docstring. ``told`` values: committed / aborted / unknown."""
    problems: list[str] = []
    seen: dict[Hashable, dict[str, bool]] = {}
    for participant, decided in outcomes.items():
        for txn, committed in decided.items():
            seen.setdefault(txn, {})[participant] = bool(committed)
    for txn, per in sorted(seen.items(), key=lambda kv: repr(kv[0])):
        if len(set(per.values())) > 1:
            problems.append(f"{txn}: participants disagree: {dict(sorted(per.items()))}")
        if told is not None and txn not in told and any(per.values()):
            problems.append(f"{txn}: committed at {sorted(p for p, c in per.items() if c)} "
                            "but no client ran it")
    for txn, status in sorted((told or {}).items(), key=lambda kv: repr(kv[0])):
        per = seen.get(txn, {})
        if status == "committed":
            for p in sorted((participants or {}).get(txn, ())):
                have = per.get(p)
                if have is not True:
                    what = "no record" if have is None else "abort"
                    problems.append(f"{txn}: the client saw commit but {p} has {what}"
                                    " (a lost committed write)")
        elif status == "aborted" and any(per.values()):
            problems.append(f"{txn}: the client saw abort but it committed at "
                            f"{sorted(p for p, c in per.items() if c)}")
    return problems


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
