"""Each benchmark's command line: its docstring as ``--help``, and its one optional size."""

from __future__ import annotations

import argparse
from typing import TypeVar

Size = TypeVar("Size", int, float)


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def size_argument(doc: str | None, name: str, kind: type[Size], default: Size) -> Size:
    """The benchmark's one positional argument, or ``default``; a bad value or ``--help``
    is answered by argparse (exit 2 or 0) before anything starts."""
    parser = parser_for(doc)
    parser.add_argument(name, type=kind, nargs="?", default=default, help=f"default {default}")
    value: Size = getattr(parser.parse_args(), name)
    return value
