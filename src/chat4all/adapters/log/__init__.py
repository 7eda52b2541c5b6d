"""The partitioned log's adapters (:class:`~chat4all.ports.MessageLog`): in memory
(:mod:`.memory`, for one process and the tests) and NATS JetStream (:mod:`.jetstream`).

Both place a key on the same partition: :func:`partition_of`.
"""

from __future__ import annotations

import zlib

__all__ = ["partition_of"]


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: CRC-32 of its UTF-8 bytes, modulo. Stable
    across processes, hosts and releases (unlike ``hash``)."""
    return zlib.crc32(key.encode()) % partitions
