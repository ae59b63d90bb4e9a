"""The agent's collectors: what it reports about the machine it runs on, in the wire form of agent-api.md.

``common`` holds what psutil gives on every platform and asks the platform's module (``linux``, ``macos`` or
``windows``, picked by ``common.platform_module``) for the rest.
"""

from __future__ import annotations

from rmm_agent.collectors.common import (
    INVENTORY_KINDS,
    MetricsSampler,
    collect_inventory,
    content_hash,
    enrollment_interfaces,
    facts,
    hardware,
    heartbeat_facts,
)

__all__ = [
    "INVENTORY_KINDS",
    "MetricsSampler",
    "collect_inventory",
    "content_hash",
    "enrollment_interfaces",
    "facts",
    "hardware",
    "heartbeat_facts",
]
