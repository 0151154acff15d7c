"""The acceptor's and learner's durable state: promise, accepted slots, chosen prefix.

"Paxos Made Simple" §2.2-2.3 and §3: an acceptor remembers the highest ballot it
promised and, per slot, the ballot and value it last accepted; a learner remembers what
it knows chosen. Everything here is persisted through ``io.put`` in the same call that
sends the reply depending on it, so the host makes it durable first (the ordering
contract of ``giants.core.process``).

Durable layout under the consensus namespace ``ns``:

* ``<ns>.acc``  ``"promised"`` -> ``[round, node]``; ``"prefix"`` -> a chosen prefix
  (every slot up to it is chosen and its log entry holds the chosen value; persisted
  lazily, so possibly below the one in memory);
* ``<ns>.log``  slot -> ``[round, node, kind, data]``: the accepted entry. A slot learnt
  chosen from a peer (catch-up) is stored under the ``CHOSEN`` ballot, above every real
  ballot: reporting it in a promise makes any new leader re-propose exactly that value;
* ``<ns>.snap`` ``"snap"`` -> ``[index, data]``: the state machine's snapshot (log
  compaction, "Paxos Made Live" §5.5);
* ``<ns>.conf`` effective slot -> ``[voters, learners]`` (see ``_config``).

Rules: the promise never decreases; an entry is only replaced by one of a higher or
equal ballot; a slot known chosen is never overwritten (an Accept for it is acknowledged
only if it carries the chosen value, which Paxos guarantees of every ballot above the
one that chose it).
"""

from __future__ import annotations

from typing import Any

from giants.core.process import Durable, Io
from giants.paxos._config import Config, ConfigHistory, unpack_config
from giants.paxos._messages import Ballot

__all__ = ["PaxosLog", "LogEntry", "CHOSEN", "ZERO", "KINDS"]

ZERO: Ballot = (0, "")
# A ballot above every real one (rounds grow by one per election).
CHOSEN: Ballot = (1 << 62, "")
KINDS = ("cmd", "noop", "conf")

LogEntry = tuple[Ballot, str, bytes | None]


class PaxosLog:
    """See the module docstring. ``audit`` (a list, or None) receives the events the
    simulation's invariant checker reads."""

    def __init__(self, ns: str, durable: Durable, initial: Config | None,
                 audit: list[tuple[Any, ...]] | None, alpha: int) -> None:
        self.alpha = alpha
        self.ns_acc, self.ns_log = f"{ns}.acc", f"{ns}.log"
        self.ns_snap, self.ns_conf = f"{ns}.snap", f"{ns}.conf"
        self.audit = audit
        promised = durable.get(self.ns_acc, "promised")
        self.promised: Ballot = (promised[0], promised[1]) if promised else ZERO
        snap = durable.get(self.ns_snap, "snap")
        self.snapshot: tuple[int, bytes] | None = (snap[0], snap[1]) if snap else None
        self.snap_index = self.snapshot[0] if self.snapshot else 0
        self.prefix = max(self.snap_index, int(durable.get(self.ns_acc, "prefix", 0)))
        self._persisted_prefix = self.prefix
        self.entries: dict[int, LogEntry] = {}
        for slot, (rnd, node, kind, data) in durable.items(self.ns_log):
            assert isinstance(slot, int)
            if slot > self.snap_index:
                self.entries[slot] = ((rnd, node), kind, data)
        # chosen slots above the prefix (learnt out of order); values are in ``entries``
        self.chosen_ahead: set[int] = {s for s, e in self.entries.items()
                                       if e[0] == CHOSEN and s > self.prefix}
        records = [(1, initial)] if initial is not None and initial.voters else []
        for slot, (voters, learners) in durable.items(self.ns_conf):
            assert isinstance(slot, int)
            records.append((slot, Config(dict(voters), dict(learners))))
        self.configs = ConfigHistory(records)

    # -- acceptor ---------------------------------------------------------------------

    def promise(self, io: Io, ballot: Ballot) -> None:
        assert ballot >= self.promised, f"{io.node_id}: promise {ballot} < {self.promised}"
        if ballot == self.promised:
            return
        self.promised = ballot
        io.put(self.ns_acc, "promised", [ballot[0], ballot[1]])
        if self.audit is not None:
            self.audit.append(("promise", ballot))

    def accepted_from(self, from_slot: int) -> list[tuple[int, int, str, str, bytes | None]]:
        return [(s, b[0], b[1], kind, data) for s, (b, kind, data) in sorted(self.entries.items())
                if s >= from_slot]

    def accept(self, io: Io, slot: int, ballot: Ballot, kind: str, data: bytes | None) -> bool:
        """Accept ``(ballot, value)`` at ``slot``; False if it was not acknowledged."""
        assert ballot >= self.promised, f"{io.node_id}: accept {ballot} below promise {self.promised}"
        if slot <= self.snap_index:
            return False
        old = self.entries.get(slot)
        if old is not None and (old[0] == CHOSEN or slot <= self.prefix):
            if (old[1], old[2]) != (kind, data):
                io.probe("paxos.accept_differs_from_chosen")
                return False
            self._audit_accept(slot, ballot, kind, data)
            return True
        assert old is None or old[0] <= ballot, f"{io.node_id}: slot {slot} ballot went back"
        self.entries[slot] = (ballot, kind, data)
        io.put(self.ns_log, slot, [ballot[0], ballot[1], kind, data])
        self._audit_accept(slot, ballot, kind, data)
        return True

    def _audit_accept(self, slot: int, ballot: Ballot, kind: str, data: bytes | None) -> None:
        if self.audit is not None:
            self.audit.append(("accept", slot, ballot, kind, data))

    # -- learner ----------------------------------------------------------------------

    def is_chosen(self, slot: int) -> bool:
        return slot <= self.prefix or slot in self.chosen_ahead

    def value(self, slot: int) -> tuple[str, bytes | None] | None:
        e = self.entries.get(slot)
        return (e[1], e[2]) if e is not None else None

    def learn(self, io: Io, slot: int, kind: str, data: bytes | None) -> None:
        """Record ``(kind, data)`` as chosen at ``slot`` (told by a peer or a quorum)."""
        if slot <= self.snap_index or self.is_chosen(slot):
            old = self.value(slot)
            assert slot <= self.snap_index or old == (kind, data), (
                f"{io.node_id}: slot {slot} chosen twice: {old} then {(kind, data)}")
            return
        self.entries[slot] = (CHOSEN, kind, data)
        io.put(self.ns_log, slot, [CHOSEN[0], CHOSEN[1], kind, data])
        self.chosen_ahead.add(slot)

    def advance(self, io: Io, ballot: Ballot | None, commit: int) -> list[int]:
        """Extend the chosen prefix over slots learnt chosen, and over slots up to
        ``commit`` accepted in ``ballot`` (the announcing leader's value). Returns the
        slots newly in the prefix."""
        new = []
        slot = self.prefix + 1
        while True:
            e = self.entries.get(slot)
            if e is None:
                break
            if slot in self.chosen_ahead:
                self.chosen_ahead.discard(slot)
            elif not (ballot is not None and slot <= commit and e[0] == ballot):
                break
            new.append(slot)
            slot += 1
        if new:
            self.prefix = new[-1]
            for s in new:
                self._on_chosen(io, s)
        return new

    def persist_prefix(self, io: Io) -> None:
        """Persist the chosen prefix if it moved. Lazy on purpose (the core only adds it
        to calls that write anyway): a persisted prefix lower than the real one is always
        safe -- on restart the node re-learns the rest -- and it costs no extra fsync."""
        if self.prefix != self._persisted_prefix:
            io.put(self.ns_acc, "prefix", self.prefix)
            self._persisted_prefix = self.prefix

    def _on_chosen(self, io: Io, slot: int) -> None:
        _, kind, data = self.entries[slot]
        if self.audit is not None:
            self.audit.append(("learn", slot, kind, data))
        if kind == "conf":
            assert data is not None
            config = unpack_config(data)
            self.add_config(io, slot + self.alpha, config)

    def add_config(self, io: Io, effective_slot: int, config: Config) -> None:
        """Record (durably) that ``config`` governs slots from ``effective_slot`` on."""
        if self.configs.get(effective_slot) == config:
            return
        self.configs.add(effective_slot, config)
        io.put(self.ns_conf, effective_slot, [dict(config.voters), dict(config.learners)])

    # -- compaction and snapshots ---------------------------------------------------------

    def compact(self, io: Io, index: int, data: bytes) -> None:
        assert index <= self.prefix, f"{io.node_id}: snapshot at {index} beyond chosen {self.prefix}"
        if index <= self.snap_index:
            return
        self.snapshot = (index, data)
        self.snap_index = index
        io.put(self.ns_snap, "snap", [index, data])
        io.delete_range(self.ns_log, 0, index + 1)
        for s in [s for s in self.entries if s <= index]:
            del self.entries[s]

    def install(self, io: Io, index: int, data: bytes) -> bool:
        """Install a peer's snapshot if it is ahead of our prefix."""
        if index <= self.prefix:
            return False
        self.snapshot = (index, data)
        self.snap_index = index
        self.prefix = index
        io.put(self.ns_snap, "snap", [index, data])
        io.delete_range(self.ns_log, 0, index + 1)
        for s in [s for s in self.entries if s <= index]:
            del self.entries[s]
        self.chosen_ahead = {s for s in self.chosen_ahead if s > index}
        if self.audit is not None:
            self.audit.append(("snapshot", index))
        return True

    def chosen_entries(self, lo: int, hi: int) -> list[tuple[int, str, bytes | None]]:
        """Chosen ``(slot, kind, data)`` for ``lo <= slot <= hi`` within the prefix."""
        out = []
        for s in range(max(lo, self.snap_index + 1), min(hi, self.prefix) + 1):
            _, kind, data = self.entries[s]
            out.append((s, kind, data))
        return out
