"""Read-only metadata requests, answered the same way by the master and its shadows
(GFS paper §2.4 "Single Master", §4.1, §5.1.3 "Master Replication").

A client asks for the chunk handles and replica locations of a range of chunks (a
batched lookup, §2.4) and caches the answer; ``list``/``stat`` read the namespace;
``fsck`` summarises replica health (replica counts, under-replicated and missing
chunks) for operators. Every handler here is a pure function of the metadata and the
location table.
"""

from __future__ import annotations

from typing import Any

from giants.core.errors import Rejected
from giants.gfs._locations import Locations
from giants.gfs._messages import ChunkInfo, Chunks, FsckReport, GetChunks, ListDir, Listing, Stat
from giants.gfs._metadata import Metadata
from giants.gfs._namespace import check_path

__all__ = ["answer_read", "chunk_infos", "fsck_report", "MAX_CHUNKS_PER_LOOKUP"]

# One lookup returns at most this many chunks: bounds the reply for huge files.
MAX_CHUNKS_PER_LOOKUP = 1024


def chunk_infos(md: Metadata, locs: Locations, chunks: list[int], first: int, count: int
                ) -> tuple[list[ChunkInfo], dict[str, str]]:
    out = []
    names: set[str] = set()
    for i in range(first, min(len(chunks), first + count)):
        h = chunks[i]
        holders = sorted(locs.of(h))
        names.update(holders)
        out.append(ChunkInfo(i, h, md.versions.get(h, 0), holders))
    return out, locs.addresses(names)


def answer_read(md: Metadata, locs: Locations, chunk_size: int, body: Any) -> Any:
    """The reply to a read-only request, or None if ``body`` is not one.
    Raises ``Rejected`` / ``NotFound`` for bad paths."""
    if isinstance(body, ListDir):
        return Listing(md.ns.listing(check_path(body.path, allow_root=True)))
    if isinstance(body, (Stat, GetChunks)):
        path = check_path(body.path, allow_root=True)
        if md.ns.is_dir(path):
            return Chunks(path, True, chunk_size, 0, [], {})
        chunks = md.ns.file(path)
        if isinstance(body, Stat):
            first, count = max(0, len(chunks) - 1), 1
        else:
            if body.first < 0 or body.count < 0:
                raise Rejected("negative chunk index or count")
            first, count = body.first, min(body.count, MAX_CHUNKS_PER_LOOKUP)
        infos, addrs = chunk_infos(md, locs, chunks, first, count)
        return Chunks(path, False, chunk_size, len(chunks), infos, addrs)
    return None


def fsck_report(md: Metadata, locs: Locations, goal: int, corrupt: int, stale: int,
                clones: int) -> FsckReport:
    replicas = {h: len(locs.of(h)) for h in md.versions}
    # A chunk never written (version 0) has no replicas yet and is not missing.
    written = {h for h, v in md.versions.items() if v > 0}
    under = sorted(h for h in written if 0 < replicas[h] < goal)
    missing = sorted(h for h in written if replicas[h] == 0)
    return FsckReport(
        files=len(md.ns.files), chunks=len(md.versions), goal=goal, replicas=replicas,
        under_replicated=under, missing=missing, corrupt_reported=corrupt,
        stale_removed=stale, chunkservers={cs: locs.load(cs) for cs in locs.live()},
        clones_in_flight=clones,
    )
