"""Alembic migrations for the fleet database; run them with ``fleet.store.migrate``."""
