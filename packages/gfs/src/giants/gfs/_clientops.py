"""The GFS client library's logic, written once as sans-I/O generators
(GFS paper §2.4, §2.7, §3.1-§3.3).

Each operation is a generator that *yields* what it needs done -- ``Call`` (a request
to an address, answered with the reply body or an exception thrown into the
generator), ``Push`` (data pushed along a chain of chunkservers, §3.2) or ``Sleep`` (a
retry backoff) -- and returns its result. Two runners drive the same generators: the
simulator's client process (``_simclient``) and the trio client (``client.GFSClient``),
so the simulated and the real client share every decision.

* **Metadata caching** (§2.4): the lease (primary and secondaries) of a chunk is cached
  until a mutation fails; chunk locations for reads are cached until a read fails.
* **Mutations** (Figure 2): ask the master for the lease, push the data to every
  replica, send the write or append to the primary. A failure leaves the region
  inconsistent; the client forgets the cached lease and retries with backoff.
* **Record append** (§3.3): at-least-once -- a retry after a partial failure may append
  the record again, so a file may hold duplicates (and padding, and the remains of
  failed attempts); readers must tolerate them (our tests identify records by id).
  A record above a quarter chunk is refused. When the primary answers ``chunk_full``
  the client moves to the next chunk.
* **Reads**: from any replica holding the chunk version the master named; a replica
  that is stale, corrupt or down makes the client try the next one, then refetch the
  locations (re-replication may have moved the chunk).
* Master unreachable: read-only requests go to the shadow masters (§5.1.3); mutations
  fail with ``Unavailable`` or the transport's indefinite error.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from giants.core.errors import DefiniteError, IndefiniteError, Rejected, Unavailable
from giants.core.process import Rng
from giants.gfs._messages import (
    Append,
    ChunkInfo,
    Chunks,
    Create,
    Data,
    Delete,
    GetChunks,
    GetLease,
    Lease,
    ListDir,
    Listing,
    Mkdir,
    Mutated,
    Read,
    Rename,
    Snapshot,
    Stat,
    Write,
)
from giants.gfs._reads import MAX_CHUNKS_PER_LOOKUP

__all__ = ["Call", "Push", "Sleep", "Parallel", "ClientState", "Op", "file_size", "read", "write",
           "record_append", "namespace_op", "list_dir", "stat"]

# A mutation is retried this many times (with backoff) before the client gives up.
MAX_ATTEMPTS = 40
BACKOFF_MIN_S = 0.02
BACKOFF_MAX_S = 1.0
# One read request asks for at most this much (the chunkserver's own cap is the same).
READ_SLICE_BYTES = 4 * 1024 * 1024
# One mutation carries at most this much data: pushes pipeline better in pieces.
WRITE_PIECE_BYTES = 8 * 1024 * 1024
# Read slices requested at once (from different replicas where possible).
READ_PARALLEL = 4


@dataclass(frozen=True)
class Call:
    target: str
    body: Any
    timeout: float


@dataclass(frozen=True)
class Push:
    chain: list[str]
    data_id: str
    data: bytes
    timeout: float


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Parallel:
    """Several calls at once; the answer is a list with, per call, its reply or the
    ``GiantsError`` it failed with."""

    calls: list[Call]


Effect = Call | Push | Sleep | Parallel
Op = Generator[Effect, Any, Any]


@dataclass
class ClientState:
    """What one client caches (§2.4: metadata only, never file data)."""

    client_id: str
    masters: list[str]  # the master first, then the shadows
    rng: Rng
    timeout_s: float = 2.0
    chunk_size: int = 0
    leases: dict[tuple[str, int], Lease] = field(default_factory=dict)
    append_index: dict[str, int] = field(default_factory=dict)
    chunks: dict[str, Chunks] = field(default_factory=dict)
    # A lower bound on each file's size from this client's own reads and mutations (files
    # only grow), so reads and writes inside it skip the size lookup.
    sizes: dict[str, int] = field(default_factory=dict)
    data_seq: int = 0

    def new_data_id(self) -> str:
        self.data_seq += 1
        return f"{self.client_id}:{self.data_seq}"

    def forget(self, path: str) -> None:
        self.leases = {k: v for k, v in self.leases.items() if k[0] != path}
        self.chunks.pop(path, None)

    def grew(self, path: str, size: int) -> None:
        self.sizes[path] = max(self.sizes.get(path, 0), size)


def _backoff(st: ClientState, attempt: int) -> Sleep:
    base = min(BACKOFF_MAX_S, BACKOFF_MIN_S * (2 ** min(attempt, 10)))
    return Sleep(base * (0.5 + st.rng.random()))


def master_call(st: ClientState, body: Any, *, read_only: bool = False,
                retry: bool = False) -> Op:
    """Ask the master; a read-only request falls back to the shadows. With ``retry``
    (idempotent requests) indefinite errors and ``Unavailable`` are retried."""
    targets = st.masters if read_only else st.masters[:1]
    last: Exception | None = None
    for attempt in range(MAX_ATTEMPTS if (retry or read_only) else 1):
        for target in targets:
            try:
                return (yield Call(target, body, st.timeout_s))
            except IndefiniteError as exc:
                if not (retry or read_only):
                    raise
                last = exc
            except Unavailable as exc:
                if not (retry or read_only):
                    raise
                last = exc
        yield _backoff(st, attempt)
    assert last is not None
    raise last


def _get_lease(st: ClientState, path: str, index: int, create: bool) -> Op:
    cached = st.leases.get((path, index)) if index >= 0 else None
    if cached is not None:
        return cached
    lease = yield from master_call(st, GetLease(path, index, create), retry=True)
    assert isinstance(lease, Lease)
    st.chunk_size = lease.chunk_size
    st.leases[(path, lease.index)] = lease
    return lease


def _push(st: ClientState, lease: Lease, data: bytes) -> Op:
    names = [lease.primary, *lease.secondaries]
    missing = [n for n in names if n not in lease.addresses]
    if missing:
        raise Unavailable(f"no address for chunkservers {missing}", reason="no_address")
    data_id = st.new_data_id()
    yield Push([lease.addresses[n] for n in names], data_id, data, st.timeout_s)
    return data_id


def _mutate_chunk(st: ClientState, path: str, index: int, make_request: Any, data: bytes,
                  create: bool) -> Op:
    """Push and send one mutation of chunk ``index``, retrying; returns ``Mutated``."""
    last: Exception | None = None
    for attempt in range(MAX_ATTEMPTS):
        try:
            lease = yield from _get_lease(st, path, index, create)
            data_id = yield from _push(st, lease, data)
            reply = yield Call(lease.addresses[lease.primary],
                               make_request(lease, data_id), st.timeout_s)
            assert isinstance(reply, Mutated)
            return lease, reply
        except (Unavailable, IndefiniteError) as exc:
            last = exc
            st.forget(path)
            yield _backoff(st, attempt)
    assert last is not None
    raise Unavailable(f"mutation of {path} chunk {index} failed {MAX_ATTEMPTS} times: {last}",
                      reason="retries_exhausted")


def record_append(st: ClientState, path: str, data: bytes) -> Op:
    """Append ``data`` at least once; returns the file offset of the copy acknowledged."""
    if st.chunk_size and len(data) > st.chunk_size // 4:
        raise Rejected(f"record of {len(data)} bytes exceeds a quarter chunk "
                       f"({st.chunk_size // 4})")
    index = st.append_index.get(path, -1)
    for _ in range(MAX_ATTEMPTS):
        lease, reply = yield from _mutate_chunk(
            st, path, index,
            lambda lease, data_id: Append(lease.handle, lease.version, data_id, len(data)),
            data, True)
        if len(data) > lease.chunk_size // 4:
            raise Rejected(f"record of {len(data)} bytes exceeds a quarter chunk")
        index = lease.index
        if reply.chunk_full:
            # Skip straight to the file's last chunk: other appenders may have filled
            # several chunks since this client's last append.
            info = yield from master_call(st, Stat(path), read_only=True)
            index = max(index + 1, info.total - 1)
            st.append_index[path] = index
            continue
        st.append_index[path] = index
        offset = index * lease.chunk_size + reply.offset
        st.grew(path, offset + len(data))
        return offset
    raise Unavailable(f"record append to {path} kept finding full chunks", reason="full")


def write(st: ClientState, path: str, offset: int, data: bytes) -> Op:
    """Write ``data`` at ``offset`` (at most the file's size: no holes)."""
    if offset < 0 or offset > st.sizes.get(path, -1):
        size = yield from file_size(st, path)
        if offset < 0 or offset > size:
            raise Rejected(f"write at {offset} outside 0..{size} (end of file) of {path}")
    pos, view = offset, memoryview(data)
    while view:
        index, off = divmod(pos, st.chunk_size)
        n = min(len(view), st.chunk_size - off, WRITE_PIECE_BYTES)
        piece = bytes(view[:n])
        yield from _mutate_chunk(
            st, path, index,
            lambda lease, data_id, off=off, n=n: Write(lease.handle, lease.version, data_id,
                                                       off, n),
            piece, True)
        pos += n
        view = view[n:]
        st.grew(path, pos)
    st.chunks.pop(path, None)


def _chunk_info(st: ClientState, path: str, index: int) -> Op:
    """``(ChunkInfo, addresses)`` for chunk ``index``, from the cache or the master
    (one batched lookup fetches the chunks from ``index`` on, §2.4)."""
    cached = st.chunks.get(path)
    if cached is not None:
        for c in cached.chunks:
            if c.index == index:
                return c, cached.addresses, cached.chunk_size
    reply = yield from master_call(st, GetChunks(path, index, MAX_CHUNKS_PER_LOOKUP),
                                   read_only=True)
    assert isinstance(reply, Chunks)
    if reply.is_dir:
        raise Rejected(f"is a directory: {path}")
    st.chunk_size = reply.chunk_size
    st.chunks[path] = reply
    if not reply.chunks or reply.chunks[0].index != index:
        raise Rejected(f"chunk {index} is past the end of {path}")
    return reply.chunks[0], reply.addresses, reply.chunk_size


def _read_chunk(st: ClientState, c: ChunkInfo, addresses: dict[str, str], off: int, n: int
                ) -> Op:
    """Bytes ``[off, off+n)`` of chunk ``c`` from some replica (the longest answer if
    replicas disagree on the chunk's length); raises ``Unavailable`` if none answers."""
    replicas = [r for r in c.locations if r in addresses]
    st.rng.shuffle(replicas)
    best: bytes | None = None
    for r in replicas:
        try:
            reply = yield Call(addresses[r], Read(c.handle, c.version, off, n), st.timeout_s)
        except (DefiniteError, IndefiniteError):
            continue
        assert isinstance(reply, Data)
        if len(reply.data) == n:
            return reply.data
        if best is None or len(reply.data) > len(best):
            best = reply.data
    if best is None:
        raise Unavailable(f"no replica of chunk {c.handle} answered", reason="no_replica")
    return best


def _chunk_length(st: ClientState, c: ChunkInfo, addresses: dict[str, str]) -> Op:
    lengths = []
    for r in c.locations:
        if r not in addresses:
            continue
        try:
            reply = yield Call(addresses[r], Read(c.handle, c.version, 0, 0), st.timeout_s)
        except (DefiniteError, IndefiniteError):
            continue
        lengths.append(reply.chunk_length)
    if not lengths:
        if c.version == 0:
            return 0  # allocated, never written
        raise Unavailable(f"no replica of chunk {c.handle} answered", reason="no_replica")
    return max(lengths)


def file_size(st: ClientState, path: str) -> Op:
    """The file's length: full chunks before the last, plus the last one's length."""
    for attempt in range(MAX_ATTEMPTS):
        info = yield from master_call(st, Stat(path), read_only=True)
        assert isinstance(info, Chunks)
        if info.is_dir:
            raise Rejected(f"is a directory: {path}")
        st.chunk_size = info.chunk_size
        if info.total == 0:
            return 0
        try:
            last = yield from _chunk_length(st, info.chunks[0], info.addresses)
        except Unavailable:
            yield _backoff(st, attempt)
            continue
        size = (info.total - 1) * info.chunk_size + last
        st.grew(path, size)
        return size
    raise Unavailable(f"cannot determine the size of {path}", reason="no_replica")


def read(st: ClientState, path: str, offset: int, length: int) -> Op:
    """Up to ``length`` bytes from ``offset``; ``Rejected`` if ``offset`` is past EOF."""
    if offset < 0 or length < 0:
        raise Rejected("negative offset or length")
    size = st.sizes.get(path, -1)
    if offset + length > size:
        size = yield from file_size(st, path)
    if offset > size:
        raise Rejected(f"read at {offset} past the end of {path} (size {size})")
    end = min(size, offset + length)
    out = bytearray()
    pos = offset
    attempt = 0
    while pos < end:
        try:
            plan: list[tuple[ChunkInfo, dict[str, str], int, int]] = []
            p = pos
            while p < end and len(plan) < READ_PARALLEL:
                index, off = divmod(p, st.chunk_size)
                n = min(end - p, st.chunk_size - off, READ_SLICE_BYTES)
                c, addresses, _ = yield from _chunk_info(st, path, index)
                plan.append((c, addresses, off, n))
                p += n
            pieces = yield from _read_slices(st, plan)
        except Unavailable:
            attempt += 1
            if attempt >= MAX_ATTEMPTS:
                raise
            st.chunks.pop(path, None)
            yield _backoff(st, attempt)
            continue
        for data, (_, _, _, n) in zip(pieces, plan, strict=True):
            out += data
            pos += len(data)
            if len(data) < n:
                return bytes(out)  # a replica ended early: end of file as far as it knows
    return bytes(out)


def _read_slices(st: ClientState, plan: list[tuple[ChunkInfo, dict[str, str], int, int]]
                 ) -> Op:
    """Read the planned slices at once, each from a random replica; a slice whose replica
    fails or answers short is read again replica by replica."""
    if len(plan) == 1:
        c, addresses, off, n = plan[0]
        data = yield from _read_chunk(st, c, addresses, off, n)
        return [data]
    calls = []
    for c, addresses, off, n in plan:
        replicas = sorted(r for r in c.locations if r in addresses)
        if not replicas:
            raise Unavailable(f"no replica of chunk {c.handle} known", reason="no_replica")
        target = addresses[st.rng.choice(replicas)]
        calls.append(Call(target, Read(c.handle, c.version, off, n), st.timeout_s))
    results = yield Parallel(calls)
    pieces = []
    for (c, addresses, off, n), res in zip(plan, results, strict=True):
        if isinstance(res, Data) and len(res.data) == n:
            pieces.append(res.data)
        else:
            pieces.append((yield from _read_chunk(st, c, addresses, off, n)))
    return pieces


def namespace_op(st: ClientState, body: Create | Mkdir | Delete | Rename | Snapshot) -> Op:
    """A namespace mutation; not retried after an indefinite error (it may have run)."""
    yield from master_call(st, body)
    for p in (getattr(body, "path", None), getattr(body, "src", None),
              getattr(body, "dst", None)):
        if p is not None:
            st.forget(p)
            st.append_index.pop(p, None)
            st.sizes = {k: v for k, v in st.sizes.items()
                        if k != p and not k.startswith(p.rstrip("/") + "/")}


def list_dir(st: ClientState, path: str) -> Op:
    reply = yield from master_call(st, ListDir(path), read_only=True)
    assert isinstance(reply, Listing)
    return reply.entries


def stat(st: ClientState, path: str) -> Op:
    """``(is_dir, size, chunks)``."""
    reply = yield from master_call(st, Stat(path), read_only=True)
    assert isinstance(reply, Chunks)
    if reply.is_dir:
        return True, 0, 0
    size = yield from file_size(st, path)
    return False, size, reply.total

