"""Alembic environment of the score store.

`serving.store.upgrade` runs it programmatically with an open connection in
`config.attributes["connection"]`; the `alembic` command line works too when `sqlalchemy.url`
is set (e.g. `alembic -x` is not needed: pass `-c` a config with the URL).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

import serving.operations_store  # noqa: F401  (its tables join Base.metadata)
import serving.ops_store  # noqa: F401  (its tables join Base.metadata)
import serving.portfolio_store  # noqa: F401
from serving.store import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
