"""giants transports: one contract (``_base``), implemented over TCP (``tcp``) and
in-process streams (``memory``); the simulator's network implements it in
``giants.core.sim``. See ``_base`` for the contract and its limits."""

from giants.core.transport._base import (
    CONNECT_TIMEOUT_S,
    MAX_IN_FLIGHT_PER_CONNECTION,
    RECEIVE_QUEUE_SIZE,
    Client,
    Endpoint,
    StreamHandler,
    StreamOpen,
    parse_address,
)
from giants.core.transport._client import StreamClient
from giants.core.transport._endpoint import StreamEndpoint

__all__ = [
    "CONNECT_TIMEOUT_S",
    "MAX_IN_FLIGHT_PER_CONNECTION",
    "RECEIVE_QUEUE_SIZE",
    "Client",
    "Endpoint",
    "StreamClient",
    "StreamEndpoint",
    "StreamHandler",
    "StreamOpen",
    "parse_address",
]
