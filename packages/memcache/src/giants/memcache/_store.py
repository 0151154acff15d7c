"""The item store of one memcached server: a pure class, time is an input.

Scaling Memcache at Facebook §2 and §6: a memcached server is a hash table of items with
a memory limit, per-slab-class LRU eviction (``_slabs``), expiry and CAS. §3.2.1's leases
are built on the same items the way memcached's meta protocol builds them: a miss with
*vivify* creates an empty placeholder item and hands its CAS value to exactly one
client as the **lease token** (``W``); later misses see the placeholder with its token
already sent (``Z``: wait and retry); the fill must carry the token (a CAS set), and a
delete removes the placeholder, so a fill computed before an invalidation is rejected.
At most one token per key per placeholder lifetime (the paper's 10 s).

Every method takes ``now`` (unix seconds, float); nothing here reads a clock. Expiry:
``exptime`` 0 never expires, a negative one is already expired, one over 30 days is an
absolute unix time, anything else is relative to ``now`` (memcached's rule).

§4.3's cold-cluster warm-up hold-off is ``delete_hold_s``: after a delete, ``add`` of that
key is refused for that long, so a stale value fetched from a warm cluster cannot be
re-added right after an invalidation.

Raises ``ItemTooLarge`` / ``OutOfMemory`` / ``NonNumeric`` (operating errors the session
turns into memcached's error strings); the state is unchanged after a raise.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Final

from giants.memcache._protocol import DEFAULT_ITEM_SIZE_MAX
from giants.memcache._slabs import SlabAllocator, SlabClass, item_total_size

__all__ = ["Item", "Store", "StoreStats", "ItemTooLarge", "OutOfMemory", "NonNumeric",
           "exptime_to_abs"]

# memcached's REALTIME_MAXDELTA: an exptime above this is an absolute unix time.
REALTIME_MAXDELTA: Final = 60 * 60 * 24 * 30
# memcached's ITEM_UPDATE_INTERVAL: an item is moved to the LRU head at most this often.
ITEM_UPDATE_INTERVAL_S: Final = 60.0
# Tail items inspected for expiry before evicting a live one (memcached searches 5).
TAIL_SEARCH: Final = 5
# The rebalancer moves a page to a class whose evicted items are younger than this
# fraction of the oldest tail age among the other classes (§6.2: "20% more recently").
REBALANCE_YOUNGER: Final = 0.8
MAX_U64: Final = 2**64 - 1
_INF: Final = float("inf")


class ItemTooLarge(Exception):
    """The item does not fit the item size limit."""


class OutOfMemory(Exception):
    """No chunk could be found or freed for the item."""


class NonNumeric(Exception):
    """incr/decr on a value that is not a decimal number."""


class Item:
    """One cached item. ``exptime`` is absolute (0: never). ``token_sent``: a lease token
    (win flag) was handed out for it; ``stale``: invalidated but kept (meta ``md I``);
    ``vivified``: an empty lease placeholder (text ``get`` treats both as misses)."""

    __slots__ = (
        "atime",
        "cas",
        "cls",
        "exptime",
        "fetched",
        "flags",
        "key",
        "stale",
        "stored",
        "token_sent",
        "value",
        "vivified",
    )

    def __init__(self, key: bytes, value: bytes, flags: int, exptime: float, cas: int,
                 cls: SlabClass, now: float) -> None:
        self.key = key
        self.value = value
        self.flags = flags
        self.exptime = exptime
        self.cas = cas
        self.cls = cls
        self.atime = now
        self.stored = now
        self.fetched = False
        self.token_sent = False
        self.stale = False
        self.vivified = False


@dataclass(slots=True)
class StoreStats:
    """memcached's counters (the ``stats`` command prints them)."""

    cmd_get: int = 0
    get_hits: int = 0
    get_misses: int = 0
    get_expired: int = 0
    get_flushed: int = 0
    cmd_set: int = 0
    cmd_touch: int = 0
    touch_hits: int = 0
    touch_misses: int = 0
    delete_hits: int = 0
    delete_misses: int = 0
    incr_hits: int = 0
    incr_misses: int = 0
    decr_hits: int = 0
    decr_misses: int = 0
    cas_hits: int = 0
    cas_misses: int = 0
    cas_badval: int = 0
    evictions: int = 0
    reclaimed: int = 0
    expired_unfetched: int = 0
    evicted_unfetched: int = 0
    total_items: int = 0
    cmd_flush: int = 0
    slabs_moved: int = 0
    lease_tokens: int = 0
    lease_waits: int = 0
    lease_rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def exptime_to_abs(exptime: int, now: float) -> float:
    """memcached's exptime rule (module docstring) as an absolute time; 0 is never."""
    if exptime == 0:
        return 0.0
    if exptime < 0:
        return now - 1.0
    if exptime > REALTIME_MAXDELTA:
        return float(exptime) if exptime > now else now - 1.0
    return now + exptime


class Store:
    """See the module docstring."""

    def __init__(self, limit_bytes: int = 64 * 1024 * 1024, *,
                 item_size_max: int = DEFAULT_ITEM_SIZE_MAX, delete_hold_s: float = 0.0,
                 cas_start: int = 0) -> None:
        self.slabs = SlabAllocator(limit_bytes, item_size_max)
        self.item_size_max = item_size_max
        self.delete_hold_s = delete_hold_s
        self.stats = StoreStats()
        self._items: dict[bytes, Item] = {}
        self._lru: dict[int, OrderedDict[bytes, Item]] = {
            c.index: OrderedDict() for c in self.slabs.classes}
        self._cas = cas_start
        self._bytes = 0
        self._oldest_live = -_INF      # flush_all: items stored at or before are invalid
        self._held: dict[bytes, float] = {}   # delete hold-off: key -> until

    # -- reading ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def peek(self, key: bytes, now: float) -> Item | None:
        """The live item for ``key`` without LRU bump or stats (for checks and ``me``)."""
        it = self._items.get(key)
        if it is None or not self._live(it, now):
            return None
        return it

    def get(self, key: bytes, now: float, *, bump: bool = True) -> Item | None:
        """The live item, counted and bumped in its LRU; expired items are reclaimed."""
        it = self._items.get(key)
        stats = self.stats
        stats.cmd_get += 1
        if it is None:
            stats.get_misses += 1
            return None
        if (it.exptime and it.exptime <= now) or it.stored <= self._oldest_live <= now:
            if it.exptime and it.exptime <= now:
                stats.get_expired += 1
            else:
                stats.get_flushed += 1
            self._unlink(it)
            stats.get_misses += 1
            return None
        stats.get_hits += 1
        it.fetched = True
        if bump and now - it.atime >= ITEM_UPDATE_INTERVAL_S:
            self._lru[it.cls.index].move_to_end(key)
            it.atime = now
        return it

    def keys(self) -> list[bytes]:
        return list(self._items)

    # -- writing ----------------------------------------------------------------------

    @property
    def last_cas(self) -> int:
        """The newest CAS handed out: it changes whenever any item is written."""
        return self._cas

    def reseed_cas(self, now: float) -> None:
        """Continue CAS values (and so lease tokens) from the clock's microseconds, so a
        restarted server never repeats a token a client may still hold."""
        self._cas = max(self._cas, int(now * 1_000_000))

    def next_cas(self) -> int:
        self._cas += 1
        return self._cas

    def link(self, key: bytes, value: bytes, flags: int, exptime: float,
             now: float) -> Item:
        """Store a new item for ``key`` (replacing any), with a fresh CAS, at the head of
        its LRU. Raises ``ItemTooLarge`` / ``OutOfMemory``. A replacement that fits the
        old item's slab class reuses its chunk (and its ``Item`` object: callers must not
        read the old item after this call)."""
        size = item_total_size(len(key), len(value))
        if size > self.item_size_max:
            raise ItemTooLarge(key)
        cls = self.slabs.class_for(size)
        old = self._items.get(key)
        if old is not None and old.cls is cls:
            self._bytes += size - item_total_size(len(key), len(old.value))
            old.value = value
            old.flags = flags
            old.exptime = exptime
            old.cas = self.next_cas()
            old.atime = old.stored = now
            old.fetched = old.token_sent = old.stale = old.vivified = False
            self._lru[cls.index].move_to_end(key)
            self.stats.total_items += 1
            return old
        if old is not None:
            self._unlink(old)
        if not self._alloc(cls, now):
            raise OutOfMemory(key)
        it = Item(key, value, flags, exptime, self.next_cas(), cls, now)
        self._items[key] = it
        self._lru[cls.index][key] = it
        self._bytes += size
        self.stats.total_items += 1
        return it

    def store(self, mode: bytes, key: bytes, value: bytes, flags: int, exptime: int,
              now: float, cas: int = 0) -> bytes:
        """A text storage command; returns STORED / NOT_STORED / EXISTS / NOT_FOUND."""
        self.stats.cmd_set += 1
        if mode == b"set":
            self.link(key, value, flags, exptime_to_abs(exptime, now), now)
            return b"STORED"
        old = self.peek(key, now)
        if mode == b"add":
            if old is not None or self.held_off(key, now):
                if old is not None:
                    self._bump(old, now)
                return b"NOT_STORED"
        elif mode == b"replace":
            if old is None:
                return b"NOT_STORED"
        elif mode == b"cas":
            if old is None:
                self.stats.cas_misses += 1
                return b"NOT_FOUND"
            if old.cas != cas:
                self.stats.cas_badval += 1
                return b"EXISTS"
            self.stats.cas_hits += 1
        else:  # append / prepend keep the old flags and exptime
            if old is None:
                return b"NOT_STORED"
            joined = old.value + value if mode == b"append" else value + old.value
            self.link(key, joined, old.flags, old.exptime, now)
            return b"STORED"
        self.link(key, value, flags, exptime_to_abs(exptime, now), now)
        return b"STORED"

    def delete(self, key: bytes, now: float) -> bool:
        """Remove the item (and with it any lease placeholder). True if it was live."""
        if self.delete_hold_s > 0:
            self._held[key] = now + self.delete_hold_s
        it = self.peek(key, now)
        if it is None:
            self.stats.delete_misses += 1
            old = self._items.get(key)
            if old is not None:
                self._unlink(old)
            return False
        self._unlink(it)
        self.stats.delete_hits += 1
        return True

    def touch(self, key: bytes, exptime: int, now: float) -> Item | None:
        self.stats.cmd_touch += 1
        it = self.get(key, now)
        if it is None:
            self.stats.touch_misses += 1
            return None
        self.stats.touch_hits += 1
        it.exptime = exptime_to_abs(exptime, now)
        return it

    def arith(self, key: bytes, incr: bool, delta: int, now: float) -> int | None:
        """incr (wraps at 2**64) / decr (floors at 0); None if missing. Raises
        ``NonNumeric``. A shorter result is space-padded in place, as memcached does."""
        it = self.peek(key, now)
        if it is None:
            if incr:
                self.stats.incr_misses += 1
            else:
                self.stats.decr_misses += 1
            return None
        text = it.value.rstrip(b" ")
        if not text.isdigit() or len(text) > 20 or int(text) > MAX_U64:
            raise NonNumeric(key)
        if incr:
            self.stats.incr_hits += 1
            result = (int(text) + delta) & MAX_U64
        else:
            self.stats.decr_hits += 1
            result = max(0, int(text) - delta)
        digits = str(result).encode()
        if len(digits) <= len(it.value):
            it.value = digits.ljust(len(it.value))
            it.cas = self.next_cas()
        else:
            self.link(key, digits, it.flags, it.exptime, now)
        return result

    def flush_all(self, now: float, delay: int = 0) -> None:
        """Invalidate every item stored up to ``now + delay`` (memcached's oldest_live)."""
        self.stats.cmd_flush += 1
        if delay <= 0:
            for it in list(self._items.values()):
                self._unlink(it)
            self._oldest_live = -_INF
            return
        self._oldest_live = exptime_to_abs(delay, now) - 1e-9

    def set_memory_limit(self, limit_bytes: int) -> None:
        self.slabs.set_limit(limit_bytes)

    # -- leases (meta vivify / stale) ---------------------------------------------------

    def vivify(self, key: bytes, ttl_s: int, now: float) -> Item:
        """A miss with vivify: an empty placeholder whose CAS is the lease token, its
        win flag already handed out. Raises ``OutOfMemory``."""
        it = self.link(key, b"", 0, exptime_to_abs(ttl_s, now), now)
        it.token_sent = True
        it.vivified = True
        self.stats.lease_tokens += 1
        return it

    def mark_stale(self, key: bytes, ttl_s: int | None, now: float) -> bool:
        """Meta ``md I``: keep the item but mark it stale (a fresh CAS, win flag
        cleared so the next reader wins the refill). False if missing."""
        it = self.peek(key, now)
        if it is None:
            return False
        it.stale = True
        it.token_sent = False
        it.cas = self.next_cas()
        if ttl_s is not None:
            it.exptime = exptime_to_abs(ttl_s, now)
        return True

    # -- expiry and eviction ------------------------------------------------------------

    def crawl(self, now: float, budget: int = 1000) -> int:
        """memcached's LRU crawler: reclaim up to ``budget`` expired items from the LRU
        tails. Returns how many were reclaimed."""
        reclaimed = 0
        for lru in self._lru.values():
            for it in list(lru.values())[:budget]:
                if not self._live(it, now):
                    self._unlink(it)
                    reclaimed += 1
        self._held = {k: t for k, t in self._held.items() if t > now}
        self.stats.reclaimed += reclaimed
        return reclaimed

    def _live(self, it: Item, now: float) -> bool:
        if it.exptime and it.exptime <= now:
            return False
        return not (it.stored <= self._oldest_live <= now)

    def held_off(self, key: bytes, now: float) -> bool:
        """True while a recent delete of ``key`` refuses adds (the warm-up hold-off)."""
        until = self._held.get(key)
        if until is None:
            return False
        if until <= now:
            del self._held[key]
            return False
        return True

    def _bump(self, it: Item, now: float) -> None:
        self._lru[it.cls.index].move_to_end(it.key)
        it.atime = now

    def _unlink(self, it: Item) -> None:
        del self._items[it.key]
        del self._lru[it.cls.index][it.key]
        self.slabs.free(it.cls)
        self._bytes -= item_total_size(len(it.key), len(it.value))

    def _alloc(self, cls: SlabClass, now: float) -> bool:
        """A chunk of ``cls``: free, a fresh page, an expired tail item, a page moved
        from an older class, or the LRU tail evicted -- in that order."""
        slabs = self.slabs
        if slabs.try_alloc(cls):
            return True
        lru = self._lru[cls.index]
        for it in list(lru.values())[:TAIL_SEARCH]:
            if not self._live(it, now):
                self._unlink(it)
                self.stats.reclaimed += 1
                if not it.fetched:
                    self.stats.expired_unfetched += 1
                return slabs.try_alloc(cls)
        if self._rebalance(cls, now):
            return slabs.try_alloc(cls)
        if not lru:
            return False
        victim = next(iter(lru.values()))
        self._evict(victim)
        return slabs.try_alloc(cls)

    def _evict(self, it: Item) -> None:
        self._unlink(it)
        it.cls.evictions += 1
        self.stats.evictions += 1
        if not it.fetched:
            self.stats.evicted_unfetched += 1

    def _rebalance(self, cls: SlabClass, now: float) -> bool:
        """§6.2: move a page here from the class with the oldest LRU tail when our own
        tail is clearly younger (or we have nothing to evict at all)."""
        own = self._lru[cls.index]
        own_age = now - next(iter(own.values())).atime if own else -1.0
        best: SlabClass | None = None
        best_age = -1.0
        for other in self.slabs.classes:
            lru = self._lru[other.index]
            if other is cls or other.pages == 0 or not lru:
                continue
            age = now - next(iter(lru.values())).atime
            if age > best_age:
                best, best_age = other, age
        if best is None or (own and own_age >= REBALANCE_YOUNGER * best_age):
            return False
        victim_lru = self._lru[best.index]
        while best.used > best.capacity - best.per_page and victim_lru:
            self._evict(next(iter(victim_lru.values())))
        if best.used > best.capacity - best.per_page:
            return False
        self.slabs.move_page(best, cls)
        self.stats.slabs_moved += 1
        return True
