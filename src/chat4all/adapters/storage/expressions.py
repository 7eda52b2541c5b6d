"""SQL expressions the statements share, compiled for each engine.

:func:`one_of` is ``column IN (...)`` for a list given at execution. SQLAlchemy renders an
expanding IN with one placeholder per value, so each length of the list is another statement
text; on PostgreSQL asyncpg prepares each text (the server parses and plans it) and keeps 100
per connection, and the hot statements (claims, delivery records, turns) with batches of 1 to
64 ids made thousands of texts that pushed each other out. There it is ``= ANY(:name)`` with
one array parameter instead: one text whatever the length.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal

__all__ = ["one_of"]


class _OneOf(sa.sql.expression.ColumnElement[bool]):
    type = sa.Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a comparison: never ``... = 1`` where booleans are ints
    _traverse_internals = [  # noqa: RUF012 (SQLAlchemy's own declaration is a plain list)
        ("column", InternalTraversal.dp_clauseelement),
        ("name", InternalTraversal.dp_string),
    ]

    def __init__(self, column: sa.ColumnElement[Any], name: str) -> None:
        self.column = column
        self.name = name


def one_of(column: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``column`` is one of the list passed as the parameter ``name`` at execution."""
    return _OneOf(column, name)


@compiles(_OneOf)
def _expanding_in(element: _OneOf, compiler: Any, **kw: Any) -> str:
    return str(
        compiler.process(element.column.in_(sa.bindparam(element.name, expanding=True)), **kw)
    )


@compiles(_OneOf, "postgresql")
def _any_of_array(element: _OneOf, compiler: Any, **kw: Any) -> str:
    array = sa.bindparam(element.name, type_=ARRAY(element.column.type))
    return str(compiler.process(element.column == sa.any_(array), **kw))
