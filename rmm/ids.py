"""Time-ordered UUIDs (RFC 9562 version 7) for primary keys.

New rows land at the right-hand edge of the primary-key B-tree instead of at random pages, which keeps inserts
on big tables (devices, commands, inventory rows) cache-friendly. Python 3.14 has ``uuid.uuid7``; we support 3.11.
"""

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # rand_b, 62 bits
    return uuid.UUID(int=value)
