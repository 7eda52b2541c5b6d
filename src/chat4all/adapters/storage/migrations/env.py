"""Alembic environment of chat4all: run by :func:`chat4all.adapters.storage.migrate.upgrade`
on a connection it hands over (``config.attributes["connection"]``), never from a URL."""

from alembic import context

from chat4all.adapters.storage.migrate import target_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=target_metadata(),
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
