"""giants.chubby: the Chubby lock service (Burrows, OSDI 2006) on a consensus plugin.

* ``ChubbyReplica`` / ``CellOptions`` -- a cell replica (sans-I/O, over any consensus core);
* ``ClientCore`` / ``ClientOptions`` -- the client library's session logic (sans-I/O);
* ``ChubbyClient`` -- the trio client library (``giants.chubby.client``);
* ``Namespace`` -- the replicated database (nodes, sessions, handles, locks).
"""

from giants.chubby._master import CellOptions, ChubbyReplica
from giants.chubby._namespace import Namespace
from giants.chubby._session import ClientCore, ClientOptions

__all__ = ["CellOptions", "ChubbyReplica", "ClientCore", "ClientOptions", "Namespace"]
