"""Small graph algorithms shared by checkers and cores (pure, deterministic).

``find_cycle`` serves both the serializability checker's dependency graphs and 2PL's
waits-for graphs: an iterative three-colour depth-first search, visiting roots and
successors in a deterministic order so that the same graph always yields the same cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

__all__ = ["find_cycle"]


def find_cycle(roots: Iterable[Hashable],
               successors: Callable[[Hashable], Iterable[Hashable]]) -> list[Hashable] | None:
    """A cycle reachable from ``roots`` (in the given order) as the list of its nodes, or
    None when there is none. ``successors(node)`` must return nodes in a fixed order."""
    state: dict[Hashable, int] = {}  # 1 = on the current path, 2 = finished
    for root in roots:
        if state.get(root):
            continue
        path: list[Hashable] = [root]
        iters = [iter(successors(root))]
        state[root] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
                continue
            mark = state.get(nxt, 0)
            if mark == 1:
                return path[path.index(nxt):]
            if mark == 0:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(successors(nxt)))
    return None
