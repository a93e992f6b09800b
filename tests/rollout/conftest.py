"""The API tests' fixtures (a migrated database and a real admin API over it)."""

from tests.api.conftest import engine, fleet, keys, postgres_url, sqlite_template

__all__ = ["engine", "fleet", "keys", "postgres_url", "sqlite_template"]
