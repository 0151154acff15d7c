"""giants-gfs: the Google File System (Ghemawat, Gobioff, Leung, SOSP 2003).

The sans-I/O cores (``MasterCore``, ``ShadowCore``, ``ChunkserverCore``), the client
library's shared operation logic, and the trio client ``GFSClient``. See README.md.
"""

from giants.gfs._chunkserver import ChunkserverConfig, ChunkserverCore
from giants.gfs._chunkstore import ChunkStore, MemoryChunkStore, PushBuffer
from giants.gfs._master import MasterConfig, MasterCore
from giants.gfs._shadow import ShadowConfig, ShadowCore

__all__ = [
    "ChunkStore",
    "ChunkserverConfig",
    "ChunkserverCore",
    "MasterConfig",
    "MasterCore",
    "MemoryChunkStore",
    "PushBuffer",
    "ShadowConfig",
    "ShadowCore",
]
