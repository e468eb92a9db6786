"""Alembic environment: run programmatically by core.db.migration.migrate with the connection in
config.attributes (no alembic.ini needed). ``python -m core db migrate`` is the command line for it."""
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through core.db.migrate(engine) (python -m core db migrate)")
context.configure(connection=connection, target_metadata=None, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
