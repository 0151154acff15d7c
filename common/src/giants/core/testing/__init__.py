"""The giants testing kit: seed plumbing, Jepsen-style histories and their checkers.

Modules (import the one you need; this package imports nothing eagerly, because the
pytest plugin lives here and must load cheaply in every test run):

* ``giants.core.testing.pytest_plugin``   -- ``--giants-seed``, ``--seeds``, ``GIANTS_SEEDS``,
  the ``giants_seeds`` fixture and the ``seeds`` marker; the seed is printed on failure.
* ``giants.core.testing.history``         -- the invoke / ok / fail / info history recorder.
* ``giants.core.testing.models``          -- sequential specifications (register, KV map, ...).
* ``giants.core.testing.linearizability`` -- the Wing-Gong-Lowe linearizability checker.
* ``giants.core.testing.serializability`` -- Adya dependency-graph (DSG) cycle checker.
* ``giants.core.testing.atomicity``       -- all-or-nothing commit and lost-write checkers.
* ``giants.core.testing.generators``      -- correct-by-construction stores that produce
  histories (to validate checkers and for benchmarks).

The common names are also available lazily from this package
(``from giants.core.testing import History, check_linearizable``).
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> defining submodule; resolved on first attribute access (PEP 562).
_LAZY = {
    "History": "history",
    "Event": "history",
    "Operation": "history",
    "UNKNOWN": "models",
    "Register": "models",
    "KVMap": "models",
    "SetModel": "models",
    "Counter": "models",
    "check_linearizable": "linearizability",
    "check_kv_linearizable": "linearizability",
    "LinearizabilityResult": "linearizability",
    "Txn": "serializability",
    "check_serializable": "serializability",
    "SerializabilityResult": "serializability",
    "check_all_or_nothing": "atomicity",
    "check_no_lost_writes": "atomicity",
    "check_acked_writes": "atomicity",
}

__all__ = [
    "UNKNOWN",
    "Counter",
    "Event",
    "History",
    "KVMap",
    "LinearizabilityResult",
    "Operation",
    "Register",
    "SerializabilityResult",
    "SetModel",
    "Txn",
    "check_acked_writes",
    "check_all_or_nothing",
    "check_kv_linearizable",
    "check_linearizable",
    "check_no_lost_writes",
    "check_serializable",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
