"""giants-memcache: memcached scaled the way Facebook scaled it (Nishtala et al., NSDI 2013).

A memcached-compatible server (text and meta protocols, slab classes, LRU, expiry,
leases), an mcrouter-style router with consistent hashing, replicated pools and a Gutter
pool, invalidation from a SQLAlchemy database's commit log (mcsqueal), and regions.
"""

from giants.memcache._protocol import Request, RequestParser
from giants.memcache._session import Server, Session
from giants.memcache._store import Item, Store
from giants.memcache.node import parse_memory, serve_memcached

__all__ = ["Item", "Request", "RequestParser", "Server", "Session", "Store",
           "parse_memory", "serve_memcached"]
