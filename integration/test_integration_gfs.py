"""Integration: GFS started from a TOML cluster spec as real processes, used only through
the ``FileSystem`` capability (GFS paper section 2.2 "Interface"; giants.core.interfaces).

The client comes from ``registry.filesystem("gfs")``; the test calls nothing but the
``FileSystem`` Protocol methods, so any other filesystem plugin could stand in.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from giants.core.cluster import load_spec
from giants.core.errors import NotFound, Rejected
from giants.core.interfaces import FileSystem
from giants.core.launcher import LocalCluster
from giants.core.plugins import load_registry

pytestmark = pytest.mark.real

CHUNK = 256 * 1024
SPEC = f"""
name = "fs-stack"
base_port = 0
data_dir = "{{data_dir}}"

[services.fs]
system = "gfs"
nodes = 3
shadows = 0
options = {{ chunk_size = {CHUNK}, heartbeat_s = 0.3, dead_after_s = 2.0, tick_s = 0.05 }}
"""


@pytest.fixture(scope="module")
def gfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("gfs-int")
    spec_path = root / "fs.toml"
    spec_path.write_text(SPEC.replace("{data_dir}", str(root / "data")))
    spec = load_spec(spec_path)
    with LocalCluster.from_spec(spec, ready_timeout_s=60.0) as cluster:
        yield cluster


def _data(n: int, seed: int) -> bytes:
    return bytes((i * 31 + seed) % 251 for i in range(n))


async def test_filesystem_protocol_end_to_end(gfs: LocalCluster) -> None:
    eps = gfs.service_endpoints("fs")
    assert len(eps["chunkserver"]) == 3
    factory = load_registry().filesystem("gfs")
    async with factory(eps["master"]) as fs:
        assert isinstance(fs, FileSystem)
        await fs.create("/int/a")
        # a write spanning three chunks, then read back across the chunk boundaries
        body = _data(2 * CHUNK + 1000, 1)
        await fs.write("/int/a", 0, body)
        assert await fs.read("/int/a", 0, len(body)) == body
        assert await fs.read("/int/a", CHUNK - 10, 20) == body[CHUNK - 10:CHUNK + 10]
        info = await fs.stat("/int/a")
        assert info.size == len(body) and info.chunks == 3

        # record appends: each record is whole at the offset it was given
        await fs.create("/int/log")
        records = [f"record-{i:03d}|".encode() * (1 + i % 5) for i in range(40)]
        offsets = [await fs.record_append("/int/log", r) for r in records]
        for off, rec in zip(offsets, records, strict=True):
            assert await fs.read("/int/log", off, len(rec)) == rec
        assert len(set(offsets)) == len(offsets)
        with pytest.raises(Rejected):
            await fs.record_append("/int/log", b"x" * (fs.max_record_bytes + 1))

        # snapshot is copy-on-write: writing the source leaves the copy unchanged
        await fs.snapshot("/int/a", "/int/a.snap")
        await fs.write("/int/a", 0, b"NEW!")
        assert await fs.read("/int/a", 0, 8) == b"NEW!" + body[4:8]
        assert await fs.read("/int/a.snap", 0, len(body)) == body

        # rename, list, delete
        await fs.rename("/int/a.snap", "/int/b")
        names = sorted(i.path for i in await fs.list("/int"))
        assert names == ["/int/a", "/int/b", "/int/log"], names
        await fs.delete("/int/a")
        with pytest.raises(NotFound):
            await fs.read("/int/a", 0, 1)
        assert await fs.read("/int/b", 0, len(body)) == body
        with pytest.raises(Rejected):
            await fs.create("/int/b")
