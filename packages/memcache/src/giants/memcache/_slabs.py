"""Slab classes: memcached's memory accounting, and the adaptive slab rebalancer.

Scaling Memcache at Facebook §6.2 ("Adaptive Slab Allocator"): memory is cut into 1 MB
pages; a page is assigned to one *slab class* and split into equal chunks; an item takes
one chunk of the smallest class it fits. Each class has its own LRU, so when the limit
is reached the class that needs room evicts its own least recently used item. The paper
adds rebalancing: when a class evicts items much younger than the oldest items of other
classes, memory moves to it from the class holding the oldest items.

This module is pure bookkeeping (sizes and counts); ``_store`` owns the items and LRUs.
Simplified: an item's memory is counted as its chunk (``chunk_size``) without laying bytes
out in pages, and a page move frees a page's worth of chunks from the victim's LRU tail
instead of emptying one physical page.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Final

__all__ = ["SlabClass", "SlabAllocator", "ITEM_HEADER_BYTES", "item_total_size"]

# memcached's item header (48 bytes) plus the 8-byte CAS field.
ITEM_HEADER_BYTES: Final = 56
# memcached's smallest chunk (-n 48 plus the header) and its growth factor (-f 1.25).
MIN_CHUNK_BYTES: Final = 96
GROWTH_FACTOR: Final = 1.25
# Chunks are 8-byte aligned, as in memcached.
CHUNK_ALIGN: Final = 8


def item_total_size(key_len: int, value_len: int) -> int:
    """Bytes an item occupies: header, key plus NUL, value plus ``\\r\\n``."""
    return ITEM_HEADER_BYTES + key_len + 1 + value_len + 2


@dataclass
class SlabClass:
    """One slab class: its chunk size and how many chunks it owns and uses."""

    index: int
    chunk_size: int
    per_page: int
    pages: int = 0
    used: int = 0
    evictions: int = 0

    @property
    def capacity(self) -> int:
        return self.pages * self.per_page


@dataclass
class SlabAllocator:
    """Pages of ``page_size`` bytes handed to classes on demand, up to ``limit_bytes``."""

    limit_bytes: int
    page_size: int
    classes: list[SlabClass] = field(default_factory=list)
    pages_total: int = 0
    pages_assigned: int = 0
    pages_moved: int = 0

    def __post_init__(self) -> None:
        self.pages_total = max(1, self.limit_bytes // self.page_size)
        size = MIN_CHUNK_BYTES
        while size < self.page_size:
            self.classes.append(SlabClass(len(self.classes) + 1, size, self.page_size // size))
            size = int(size * GROWTH_FACTOR)
            size += (-size) % CHUNK_ALIGN
        self.classes.append(SlabClass(len(self.classes) + 1, self.page_size, 1))
        self._sizes = [c.chunk_size for c in self.classes]

    def class_for(self, total_size: int) -> SlabClass:
        """The smallest class whose chunk holds ``total_size`` bytes (asserts it fits)."""
        assert total_size <= self.page_size, "caller checks the item size limit"
        return self.classes[bisect.bisect_left(self._sizes, total_size)]

    def try_alloc(self, cls: SlabClass) -> bool:
        """Take a chunk of ``cls``, assigning it a fresh page if needed; False if the
        class is full and no page is left (the caller evicts or rebalances)."""
        if cls.used < cls.capacity:
            cls.used += 1
            return True
        if self.pages_assigned < self.pages_total:
            self.pages_assigned += 1
            cls.pages += 1
            cls.used += 1
            return True
        return False

    def free(self, cls: SlabClass) -> None:
        assert cls.used > 0, f"slab class {cls.index} freed more chunks than it used"
        cls.used -= 1

    def move_page(self, src: SlabClass, dst: SlabClass) -> None:
        """Move one page from ``src`` (whose chunks the caller has emptied) to ``dst``."""
        assert src.pages > 0 and src.used <= src.capacity - src.per_page
        src.pages -= 1
        dst.pages += 1
        self.pages_moved += 1

    def set_limit(self, limit_bytes: int) -> None:
        """``cache_memlimit``: a new limit; pages already assigned stay (as in memcached)."""
        self.limit_bytes = limit_bytes
        self.pages_total = max(1, limit_bytes // self.page_size, self.pages_assigned)
