"""giants 2PC: two-phase commit and a sharded transactional KV on two-phase locking.

Gray, "Notes on Data Base Operating Systems" (1978) §5.8.3; Mohan, Lindsay, Obermarck,
"Transaction Management in the R* Distributed Database Management System" (TODS 1986);
Gray & Lamport, "Consensus on Transaction Commit" (TODS 2006) for the replicated
coordinator.
"""

from giants.twopc._coordinator import Coordinator, CoordinatorBase, CoordinatorOptions
from giants.twopc._messages import (
    Ack,
    CommitTxn,
    Decision,
    PeerQuery,
    PeerState,
    Prepare,
    QueryOutcome,
    ReadResult,
    RollbackAck,
    StatusQuery,
    StatusReply,
    TxnOutcome,
    TxnRead,
    TxnRollback,
    TxnWrite,
    Vote,
    WriteAck,
)
from giants.twopc._participant import Participant, ParticipantOptions
from giants.twopc._replicated import DecisionLog, ReplicatedCoordinator
from giants.twopc._sharding import coordinator_names, shard_for, shard_names

__all__ = [
    "Ack", "CommitTxn", "Coordinator", "CoordinatorBase", "CoordinatorOptions", "Decision",
    "DecisionLog", "Participant", "ParticipantOptions", "PeerQuery", "PeerState", "Prepare",
    "QueryOutcome", "ReadResult", "ReplicatedCoordinator", "RollbackAck", "StatusQuery",
    "StatusReply", "TxnOutcome", "TxnRead", "TxnRollback", "TxnWrite", "Vote", "WriteAck",
    "coordinator_names", "shard_for", "shard_names",
]
