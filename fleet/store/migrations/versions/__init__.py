"""Migration scripts, applied in revision order (Alembic skips this file)."""
