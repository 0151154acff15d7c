"""GFS wire messages (GFS paper §2.3 "Architecture", §3 "System interactions").

Three kinds of traffic, as in Figure 1 and Figure 2 of the paper:

* client <-> master: metadata only (namespace, chunk handles, locations, leases);
* master <-> chunkserver: heartbeats with chunk reports, lease grants and revocations,
  clone and copy-on-write instructions;
* client <-> chunkserver and chunkserver <-> chunkserver: data push (``PushData`` in the
  simulator; a raw stream in the real driver), mutations ordered by the primary, reads.

Errors travel as ``ErrorReply`` (``Rejected``, ``NotFound``, ``Unavailable``), never as
ad-hoc codes; the ``reason`` detail of ``Unavailable`` says why a retry may help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, final

from giants.core.codec import message

# -- client -> master ------------------------------------------------------------------


@final
@message("gfs.create")
@dataclass(frozen=True, slots=True)
class Create:
    path: str


@final
@message("gfs.mkdir")
@dataclass(frozen=True, slots=True)
class Mkdir:
    path: str


@final
@message("gfs.delete")
@dataclass(frozen=True, slots=True)
class Delete:
    path: str


@final
@message("gfs.rename")
@dataclass(frozen=True, slots=True)
class Rename:
    src: str
    dst: str


@final
@message("gfs.snapshot")
@dataclass(frozen=True, slots=True)
class Snapshot:
    src: str
    dst: str


@final
@message("gfs.list")
@dataclass(frozen=True, slots=True)
class ListDir:
    path: str


@final
@message("gfs.listing")
@dataclass(frozen=True, slots=True)
class Listing:
    entries: list[tuple[str, bool]]  # (child name, is_dir)


@final
@message("gfs.stat")
@dataclass(frozen=True, slots=True)
class Stat:
    path: str


@final
@message("gfs.get_chunks")
@dataclass(frozen=True, slots=True)
class GetChunks:
    """Locations of chunks ``first .. first+count-1`` of ``path`` (a batched lookup)."""

    path: str
    first: int
    count: int


@final
@message("gfs.chunk_info")
@dataclass(frozen=True, slots=True)
class ChunkInfo:
    index: int
    handle: int
    version: int
    locations: list[str]


@final
@message("gfs.chunks")
@dataclass(frozen=True, slots=True)
class Chunks:
    """Reply to ``GetChunks`` and ``Stat``: the file's chunk count, the chunks asked for,
    and the addresses of the chunkservers named in them."""

    path: str
    is_dir: bool
    chunk_size: int
    total: int
    chunks: list[ChunkInfo]
    addresses: dict[str, str]


@final
@message("gfs.get_lease")
@dataclass(frozen=True, slots=True)
class GetLease:
    """Which replica holds the lease on chunk ``index`` of ``path`` (granting one if
    needed). ``index == -1`` means the last chunk. With ``create``, the chunk at
    ``index == total`` (or the first one of an empty file) is added."""

    path: str
    index: int
    create: bool


@final
@message("gfs.lease")
@dataclass(frozen=True, slots=True)
class Lease:
    index: int
    handle: int
    version: int
    primary: str
    secondaries: list[str]
    addresses: dict[str, str]
    chunk_size: int


@final
@message("gfs.fsck")
@dataclass(frozen=True, slots=True)
class Fsck:
    pass


@final
@message("gfs.fsck_report")
@dataclass(frozen=True, slots=True)
class FsckReport:
    files: int
    chunks: int
    goal: int
    replicas: dict[int, int]       # handle -> live up-to-date replicas
    under_replicated: list[int]
    missing: list[int]
    corrupt_reported: int
    stale_removed: int
    chunkservers: dict[str, int]   # live chunkserver -> chunks it holds
    clones_in_flight: int


@final
@message("gfs.ok")
@dataclass(frozen=True, slots=True)
class Ok:
    pass


# -- master <-> shadow ---------------------------------------------------------------


@final
@message("gfs.log_append")
@dataclass(frozen=True, slots=True)
class LogAppend:
    """Operation-log records ``first .. first+len(records)-1``; ``checkpoint`` (with its
    sequence number ``checkpoint_seq``) when the shadow is too far behind the log."""

    first: int
    records: list[Any]
    checkpoint: Any
    checkpoint_seq: int


@final
@message("gfs.log_ack")
@dataclass(frozen=True, slots=True)
class LogAck:
    applied: int  # highest sequence number durable at the shadow


# -- chunkserver <-> master ------------------------------------------------------------


@final
@message("gfs.heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    chunkserver: str
    address: str
    chunks: list[tuple[int, int, int]]  # (handle, version, length)
    extend: list[int]                   # leases held as primary, asking for extension
    corrupt: list[int]                  # handles found corrupt since the last beat
    sent_at: float                      # the chunkserver's clock when it sent this


@final
@message("gfs.heartbeat_reply")
@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    delete: list[tuple[int, int]]  # (handle, version reported): orphaned or stale replicas
    extended: list[int]    # leases extended from ``sent_at``
    lease_s: float
    sent_at: float


@final
@message("gfs.grant")
@dataclass(frozen=True, slots=True)
class Grant:
    """New version ``version`` for ``handle``; ``primary`` holds the lease, forwarding
    mutations to ``secondaries``. Every replica named records the version. Only a grant
    of a brand-new chunk (``create``) may create the chunk; a replica that lost an
    existing chunk refuses, so it can never pass an empty chunk off as up to date."""

    handle: int
    version: int
    primary: str
    secondaries: list[str]
    lease_s: float
    create: bool


@final
@message("gfs.grant_ack")
@dataclass(frozen=True, slots=True)
class GrantAck:
    handle: int
    version: int


@final
@message("gfs.revoke")
@dataclass(frozen=True, slots=True)
class Revoke:
    handle: int


@final
@message("gfs.revoke_ack")
@dataclass(frozen=True, slots=True)
class RevokeAck:
    handle: int


@final
@message("gfs.clone")
@dataclass(frozen=True, slots=True)
class Clone:
    """Copy ``handle`` at ``version`` from chunkserver ``source`` (re-replication)."""

    handle: int
    version: int
    source: str


@final
@message("gfs.clone_done")
@dataclass(frozen=True, slots=True)
class CloneDone:
    handle: int
    version: int
    ok: bool
    length: int


@final
@message("gfs.copy_local")
@dataclass(frozen=True, slots=True)
class CopyLocal:
    """Copy-on-write after a snapshot: duplicate chunk ``old`` as ``new`` locally."""

    old: int
    new: int
    version: int


@final
@message("gfs.copy_done")
@dataclass(frozen=True, slots=True)
class CopyDone:
    old: int
    new: int
    ok: bool


@final
@message("gfs.drop_chunk")
@dataclass(frozen=True, slots=True)
class DropChunk:
    """Remove an excess replica (rebalancing, over-replication)."""

    handle: int


# -- client / chunkserver data path -----------------------------------------------------


@final
@message("gfs.push")
@dataclass(frozen=True, slots=True)
class PushData:
    """Data pushed along ``chain`` (the receiver forwards to ``chain[0]`` with the rest);
    held in the receiver's buffer under ``data_id`` until a mutation uses it (§3.2)."""

    data_id: str
    data: bytes
    chain: list[str]


@final
@message("gfs.push_ack")
@dataclass(frozen=True, slots=True)
class PushAck:
    data_id: str


@final
@message("gfs.write")
@dataclass(frozen=True, slots=True)
class Write:
    handle: int
    version: int
    data_id: str
    offset: int
    length: int


@final
@message("gfs.append")
@dataclass(frozen=True, slots=True)
class Append:
    handle: int
    version: int
    data_id: str
    length: int


@final
@message("gfs.mutated")
@dataclass(frozen=True, slots=True)
class Mutated:
    """A write or record append succeeded at every replica; the data is at ``offset``
    within the chunk. ``chunk_full``: nothing was appended, the chunk was padded, retry
    on the next chunk (§3.3)."""

    offset: int
    chunk_full: bool


@final
@message("gfs.apply")
@dataclass(frozen=True, slots=True)
class Apply:
    """Primary -> secondary: apply mutation ``serial`` (the primary's order) of
    ``handle`` at ``version``: write buffered ``data_id`` at ``offset``, or, with an
    empty ``data_id``, pad with zeros up to ``offset``."""

    handle: int
    version: int
    serial: int
    data_id: str
    offset: int
    length: int


@final
@message("gfs.applied")
@dataclass(frozen=True, slots=True)
class Applied:
    handle: int
    serial: int


@final
@message("gfs.read")
@dataclass(frozen=True, slots=True)
class Read:
    handle: int
    version: int
    offset: int
    length: int


@final
@message("gfs.data")
@dataclass(frozen=True, slots=True)
class Data:
    data: bytes
    chunk_length: int


@final
@message("gfs.fetch")
@dataclass(frozen=True, slots=True)
class Fetch:
    """Chunkserver -> chunkserver during a clone: bytes of ``handle`` at ``version``."""

    handle: int
    version: int
    offset: int
    length: int


@final
@message("gfs.push_header")
@dataclass(frozen=True, slots=True)
class PushHeader:
    """The header of a raw data-push stream in the real driver: ``length`` bytes follow;
    forward them along ``chain`` (addresses); answer one byte once the whole chain holds
    them."""

    data_id: str
    length: int
    chain: list[str]
