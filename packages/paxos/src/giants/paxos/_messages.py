"""Wire messages of Basic Paxos and Multi-Paxos ("Paxos Made Simple" §2, §3).

A ballot is ``(round, proposer id)``: totally ordered, and unique per proposer because
the proposer id breaks ties. On the wire a ballot is the array ``[round, node]``.

Multi-Paxos entries travel as ``(slot, kind, data)``: ``kind`` is ``"cmd"`` (``data`` is
the service's opaque command), ``"noop"`` (``data`` None; gap filling) or ``"conf"``
(``data`` a msgpack-packed configuration). Accepted entries in a Promise carry the
ballot they were accepted in: ``(slot, round, node, kind, data)``.

Every field is type-checked by the codec on decode; the cores check the rest (a ballot
naming someone other than the sender, slots out of range, unknown kinds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from giants.core.codec import message

__all__ = [
    "Ballot",
    "WireEntry",
    "AcceptedEntry",
    "Prepare",
    "Promise",
    "Accept",
    "Accepted",
    "Nack",
    "CatchUpRequest",
    "Learn",
    "BasicPrepare",
    "BasicPromise",
    "BasicAccept",
    "BasicAccepted",
    "BasicNack",
    "BasicPropose",
    "MULTI_MESSAGES",
    "BASIC_MESSAGES",
]

Ballot = tuple[int, str]
WireEntry = tuple[int, str, bytes | None]
AcceptedEntry = tuple[int, int, str, str, bytes | None]
ConfigRecord = tuple[int, dict[str, str], dict[str, str]]


# -- Multi-Paxos ---------------------------------------------------------------------


@message("paxos.prepare")
@dataclass(frozen=True, slots=True)
class Prepare:
    """Phase 1a for every slot from ``from_slot`` on (one prepare for all future slots)."""

    ballot: Ballot
    from_slot: int


@message("paxos.promise")
@dataclass(frozen=True, slots=True)
class Promise:
    """Phase 1b: the acceptor promised ``ballot``; ``accepted`` lists what it accepted at
    slots >= the prepare's ``from_slot``. ``snap_index``: the acceptor compacted every
    slot up to it (all chosen); ``prefix``: it knows every slot up to it chosen."""

    ballot: Ballot
    accepted: list[AcceptedEntry]
    snap_index: int
    prefix: int


@message("paxos.accept")
@dataclass(frozen=True, slots=True)
class Accept:
    """Phase 2a for ``entries`` (empty: a heartbeat). ``commit``: every slot up to it is
    chosen, with the value this leader proposed in ``ballot`` where it proposed one.
    ``seq`` numbers the leader's heartbeat rounds (linearizable reads)."""

    ballot: Ballot
    entries: list[WireEntry]
    commit: int
    seq: int


@message("paxos.accepted")
@dataclass(frozen=True, slots=True)
class Accepted:
    """Phase 2b for ``slots`` (empty: a heartbeat ack); ``prefix`` is the acceptor's
    chosen prefix (for catch-up), ``seq`` echoes the Accept's."""

    ballot: Ballot
    slots: list[int]
    prefix: int
    seq: int


@message("paxos.nack")
@dataclass(frozen=True, slots=True)
class Nack:
    """The acceptor refused ``ballot``: it has promised ``promised``."""

    ballot: Ballot
    promised: Ballot


@message("paxos.catch_up")
@dataclass(frozen=True, slots=True)
class CatchUpRequest:
    """Ask a peer for chosen values from ``from_slot`` on (a snapshot if it compacted)."""

    from_slot: int


@message("paxos.learn")
@dataclass(frozen=True, slots=True)
class Learn:
    """Chosen values: an optional snapshot (``snap_index`` > 0 with ``snapshot``), the
    configuration history, and chosen ``entries`` after it."""

    snap_index: int
    snapshot: bytes | None
    configs: list[ConfigRecord]
    entries: list[WireEntry]


# -- Basic (single-decree) Paxos -----------------------------------------------------


@message("paxos.basic.propose")
@dataclass(frozen=True, slots=True)
class BasicPropose:
    """A client asks a proposer to get ``value`` chosen."""

    value: Any


@message("paxos.basic.prepare")
@dataclass(frozen=True, slots=True)
class BasicPrepare:
    ballot: Ballot


@message("paxos.basic.promise")
@dataclass(frozen=True, slots=True)
class BasicPromise:
    ballot: Ballot
    accepted_ballot: Ballot | None
    accepted_value: Any


@message("paxos.basic.accept")
@dataclass(frozen=True, slots=True)
class BasicAccept:
    ballot: Ballot
    value: Any


@message("paxos.basic.accepted")
@dataclass(frozen=True, slots=True)
class BasicAccepted:
    """Phase 2b, sent by an acceptor to the proposer and to every learner."""

    ballot: Ballot
    value: Any


@message("paxos.basic.nack")
@dataclass(frozen=True, slots=True)
class BasicNack:
    ballot: Ballot
    promised: Ballot


MULTI_MESSAGES = (Prepare, Promise, Accept, Accepted, Nack, CatchUpRequest, Learn)
BASIC_MESSAGES = (BasicPropose, BasicPrepare, BasicPromise, BasicAccept, BasicAccepted, BasicNack)
