"""Run the fleet database's Alembic migrations from code; no alembic.ini is needed.

The server calls ``upgrade(url)`` at start. For development, the same configuration
drives autogenerate (review the result, then ``ruff format`` it)::

    python -m fleet.store.migrate upgrade sqlite:///fleet-data/fleet.db
    python -m fleet.store.migrate revision sqlite:///scratch.db -m "add rollouts"
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

from fleet.store.db import make_engine

__all__ = ["MIGRATIONS", "alembic_config", "main", "revision", "upgrade"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Through attributes, not the "sqlalchemy.url" option: Config is a ConfigParser,
    # which would read a '%' in a password as interpolation.
    config.attributes["url"] = url
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``, in one transaction where the
    backend allows it (PostgreSQL and, with our engine settings, SQLite)."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            config = alembic_config(url)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()


def revision(url: str | URL, message: str, *, rev_id: str | None = None) -> None:
    """Autogenerate a revision from the difference between ``url`` (at head) and tables.py."""
    command.revision(alembic_config(url), message=message, autogenerate=True, rev_id=rev_id)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleet.store.migrate")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("upgrade", help="migrate a database to head")
    up.add_argument("url")
    new = commands.add_parser("revision", help="autogenerate a migration")
    new.add_argument("url", help="a database already at head")
    new.add_argument("-m", "--message", required=True)
    new.add_argument("--rev-id")
    args = parser.parse_args(argv)
    if args.command == "upgrade":
        upgrade(args.url)
    else:
        revision(args.url, args.message, rev_id=args.rev_id)


if __name__ == "__main__":
    main()
