"""Just enough of a Dockerfile reader for the deployment tests: instructions with their
continuation lines joined, grouped by build stage, and .dockerignore matching."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT, CMD or HEALTHCHECK ... CMD."""
        text = self.args.split(" CMD ", 1)[1] if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not exec form"
        return [str(item) for item in value]

    def pairs(self) -> dict[str, str]:
        """ENV/ARG ``KEY=value`` pairs."""
        return dict(word.split("=", 1) for word in shlex.split(self.args) if "=" in word)


def instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # Docker drops comment lines, inside continuations too
        if not parts:
            start = number
        parts.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, args = " ".join(parts).partition(" ")
            found.append(Instruction(keyword.upper(), args.strip(), start))
            parts = []
    return found


def stages(found: list[Instruction]) -> dict[str, list[Instruction]]:
    """Stage name → its instructions after FROM, in file order (the last is the default)."""
    named: dict[str, list[Instruction]] = {}
    current: list[Instruction] | None = None
    for instruction in found:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: {instruction}"
            current = named.setdefault(words[2], [])
        elif current is not None:
            current.append(instruction)
    return named


def _pattern(glob: str) -> re.Pattern[str]:
    regex = ""
    for token in re.split(r"(\*\*/|\*\*|\*|\?)", glob.strip("/")):
        regex += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
            token, re.escape(token)
        )
    return re.compile(regex)


def dockerignored(path: str, ignore_file: Path = DOCKERIGNORE) -> bool:
    """Whether ``path`` (relative to the context) is left out of the build context: a
    pattern matching the path or one of its parent directories excludes it; the last
    matching pattern wins, ``!`` patterns include again."""
    rules = [
        (line.startswith("!"), _pattern(line.removeprefix("!")))
        for line in (raw.strip() for raw in ignore_file.read_text().splitlines())
        if line and not line.startswith("#")
    ]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for include, pattern in rules:
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            excluded = not include
    return excluded
