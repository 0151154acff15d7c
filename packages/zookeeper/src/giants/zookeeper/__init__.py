"""giants-zookeeper: a ZooKeeper ensemble (Hunt et al., USENIX ATC 2010) that kazoo uses
unchanged; its data tree is replicated by a giants consensus plugin (default raft)."""

from giants.zookeeper._jute import DEFAULT_MAX_BUFFER, Err, Event, Op, Perm
from giants.zookeeper._server import ServerOptions, ZooKeeperServer, zxid_of
from giants.zookeeper._tree import DataTree

__all__ = ["ZooKeeperServer", "ServerOptions", "DataTree", "zxid_of", "Op", "Err", "Event",
           "Perm", "DEFAULT_MAX_BUFFER"]
