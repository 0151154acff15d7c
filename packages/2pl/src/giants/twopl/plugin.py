"""The 2PL plugin: provides the ``lock_manager`` capability.

2PL has no server role of its own: the lock manager is a library core that a server
embeds (the 2PC participants of giants-2pc run their transactional KV on it, and
Spanner's tablets can). ``registry.get("lock_manager", "2pl")`` is a factory
``(policy, wait_timeout_s=None) -> LockManager``.
"""

from __future__ import annotations

from giants.core.plugins import Registry, hookimpl
from giants.twopl._manager import LockManager

__all__ = ["giants_register_services", "lock_manager_factory"]


def lock_manager_factory(policy: str = "wound-wait", wait_timeout_s: float | None = None
                         ) -> LockManager:
    """A fresh ``LockManager`` with the given deadlock policy."""
    return LockManager(policy, wait_timeout_s=wait_timeout_s)


@hookimpl
def giants_register_services(registry: Registry) -> None:
    registry.provide("lock_manager", "2pl", lock_manager_factory)
