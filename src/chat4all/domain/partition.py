"""Where a key lands among a partitioned log's partitions: the rule the log's adapters publish
by and the workers that own partitions reason with."""

from __future__ import annotations

import zlib

__all__ = ["partition_of"]


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: CRC-32 of its UTF-8 bytes, modulo. Stable
    across processes, hosts and releases (unlike ``hash``)."""
    return zlib.crc32(key.encode()) % partitions
