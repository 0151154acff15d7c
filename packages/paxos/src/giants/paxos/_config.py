"""Configurations by slot: membership change through the log with an alpha window.

Lamport's "Paxos Made Simple" §3 (and "Paxos Made Moderately Complex" §3.3): the
configuration (the voters whose majorities are quorums) that governs slot ``t`` is the
initial one changed by every configuration command chosen at a slot ``<= t - alpha``.
A leader never proposes slot ``t`` before every slot ``<= t - alpha`` is chosen (its
pipeline window is alpha), so it always knows the exact configuration of each slot it
proposes, and runs both phases with that configuration's quorums. That is the whole
safety argument; no joint consensus is needed.

``ConfigHistory`` is the list of ``(effective_slot, voters, learners)``, ordered by slot.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection
from dataclasses import dataclass

import msgpack

__all__ = ["Config", "ConfigHistory", "pack_config", "unpack_config"]


@dataclass(frozen=True)
class Config:
    voters: dict[str, str]
    learners: dict[str, str]

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def is_quorum(self, nodes: Collection[str]) -> bool:
        return bool(self.voters) and sum(1 for v in self.voters if v in nodes) >= self.quorum()

    def members(self) -> dict[str, str]:
        return {**self.voters, **self.learners}


EMPTY = Config({}, {})


def pack_config(voters: dict[str, str], learners: dict[str, str]) -> bytes:
    data: bytes = msgpack.packb([voters, learners], use_bin_type=True)
    return data


def unpack_config(data: bytes) -> Config:
    """Raises ``ValueError`` if ``data`` is not a packed configuration."""
    try:
        voters, learners = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ValueError(f"undecodable configuration: {exc}") from None
    if not (isinstance(voters, dict) and isinstance(learners, dict)
            and all(isinstance(k, str) and isinstance(v, str)
                    for d in (voters, learners) for k, v in d.items())):
        raise ValueError("a configuration is [voters, learners] of str -> str")
    return Config(voters, learners)


class ConfigHistory:
    """Configurations by effective slot (see the module docstring)."""

    def __init__(self, records: list[tuple[int, Config]] | None = None) -> None:
        self._slots: list[int] = []
        self._configs: list[Config] = []
        for slot, config in sorted(records or [], key=lambda r: r[0]):
            self.add(slot, config)

    def add(self, effective_slot: int, config: Config) -> None:
        i = bisect.bisect_left(self._slots, effective_slot)
        if i < len(self._slots) and self._slots[i] == effective_slot:
            self._configs[i] = config
            return
        self._slots.insert(i, effective_slot)
        self._configs.insert(i, config)

    def at(self, slot: int) -> Config:
        """The configuration governing ``slot`` (empty before the first one)."""
        i = bisect.bisect_right(self._slots, slot) - 1
        return self._configs[i] if i >= 0 else EMPTY

    def get(self, effective_slot: int) -> Config | None:
        """The configuration recorded as effective exactly at ``effective_slot``."""
        i = bisect.bisect_left(self._slots, effective_slot)
        if i < len(self._slots) and self._slots[i] == effective_slot:
            return self._configs[i]
        return None

    def between(self, lo: int, hi: int) -> list[Config]:
        """The distinct configurations governing some slot in ``[lo, hi]``."""
        out = [self.at(lo)]
        for slot, config in zip(self._slots, self._configs, strict=False):
            if lo < slot <= hi and config not in out:
                out.append(config)
        return out

    def latest(self) -> Config:
        return self._configs[-1] if self._configs else EMPTY

    def latest_slot(self) -> int:
        return self._slots[-1] if self._slots else 0

    def known_nodes(self) -> set[str]:
        return {n for c in self._configs for n in c.members()}

    def records(self) -> list[tuple[int, dict[str, str], dict[str, str]]]:
        return [(s, dict(c.voters), dict(c.learners)) for s, c in zip(self._slots, self._configs, strict=False)]

    def __len__(self) -> int:
        return len(self._slots)
