"""The committed JSON Schemas are current, and the protocol doc's examples satisfy them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schemas.export import JSON_DIR, render_all
from tests.schemas.protocol_example import DOC, extract_blocks


def _schema_name(block: str) -> str | None:
    """``example:release-payload`` → ``release.json``; blocks that are not JSON → None."""
    name = block.removeprefix("example:")
    if name == "delivery":
        return "delivery.json"
    if name.endswith("-envelope"):
        return "envelope.json"
    if name.endswith("-payload"):
        return f"{name.removesuffix('-payload')}.json"
    return None


def _json_examples() -> list[tuple[str, str, str]]:
    """(block, schema file, example text) for every JSON example block of the doc."""
    blocks = extract_blocks(DOC.read_text(encoding="utf-8"))
    return [
        (key, schema, text)
        for key, text in sorted(blocks.items())
        if (schema := _schema_name(key)) is not None
    ]


def test_committed_json_schemas_equal_the_rendered_ones() -> None:
    rendered = render_all()
    assert sorted(path.name for path in JSON_DIR.glob("*.json")) == sorted(rendered)
    for name, text in rendered.items():
        assert (JSON_DIR / name).read_text() == text, f"{name} is stale: python -m schemas.export"


def test_every_document_kind_has_a_json_example_in_the_doc() -> None:
    assert {schema for _, schema, _ in _json_examples()} == set(render_all())


@pytest.mark.parametrize(
    ("schema_name", "text"),
    [pytest.param(schema, text, id=key) for key, schema, text in _json_examples()],
)
def test_doc_example_validates_against_its_json_schema(schema_name: str, text: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema: dict[str, Any] = json.loads((JSON_DIR / schema_name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(json.loads(text))
