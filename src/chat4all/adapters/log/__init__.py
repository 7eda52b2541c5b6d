"""The partitioned log's adapters (:class:`~chat4all.ports.MessageLog`): in memory
(:mod:`.memory`, for one process and the tests) and NATS JetStream (:mod:`.jetstream`).

Both place a key on the same partition: :func:`chat4all.domain.partition.partition_of`.
"""
