"""Lock modes of multiple-granularity locking (Gray, Lorie, Putzolu, Traiger 1976, §3).

Five modes: ``IS`` (intention shared), ``IX`` (intention exclusive), ``S`` (shared),
``SIX`` (shared + intention exclusive) and ``X`` (exclusive). ``COMPATIBLE`` is the
paper's compatibility matrix; ``supremum(a, b)`` is the weakest mode at least as strong
as both, which is what a holder of ``a`` that asks for ``b`` converts to (an upgrade:
``S`` then ``X`` gives ``X``; ``IX`` then ``S`` gives ``SIX``). ``intention_for(m)`` is
the mode a transaction must hold on the parent (the table) before it may take ``m`` on
a child (a row).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LockMode", "COMPATIBLE", "compatible", "supremum", "covers", "intention_for"]


class LockMode(StrEnum):
    IS = "IS"
    IX = "IX"
    S = "S"
    SIX = "SIX"
    X = "X"


_M = LockMode
# The paper's table: may a request in the column mode be granted beside a holder in the
# row mode?
COMPATIBLE: dict[LockMode, frozenset[LockMode]] = {
    _M.IS: frozenset({_M.IS, _M.IX, _M.S, _M.SIX}),
    _M.IX: frozenset({_M.IS, _M.IX}),
    _M.S: frozenset({_M.IS, _M.S}),
    _M.SIX: frozenset({_M.IS}),
    _M.X: frozenset(),
}

# The partial order of strength: a mode covers itself and every mode listed here.
_COVERS: dict[LockMode, frozenset[LockMode]] = {
    _M.IS: frozenset({_M.IS}),
    _M.IX: frozenset({_M.IS, _M.IX}),
    _M.S: frozenset({_M.IS, _M.S}),
    _M.SIX: frozenset({_M.IS, _M.IX, _M.S, _M.SIX}),
    _M.X: frozenset({_M.IS, _M.IX, _M.S, _M.SIX, _M.X}),
}
# Weakest first, so the first mode covering both is the supremum.
_BY_STRENGTH = (_M.IS, _M.IX, _M.S, _M.SIX, _M.X)


def compatible(held: LockMode, requested: LockMode) -> bool:
    return requested in COMPATIBLE[held]


def covers(strong: LockMode, weak: LockMode) -> bool:
    """True if holding ``strong`` already grants everything ``weak`` would."""
    return weak in _COVERS[strong]


def supremum(a: LockMode, b: LockMode) -> LockMode:
    for mode in _BY_STRENGTH:
        if covers(mode, a) and covers(mode, b):
            return mode
    raise AssertionError("X covers every mode")


def intention_for(mode: LockMode) -> LockMode:
    """The parent mode a child lock in ``mode`` requires (IS for S, IX for X)."""
    return _M.IS if mode in (_M.IS, _M.S) else _M.IX
