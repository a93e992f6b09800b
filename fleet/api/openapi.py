"""The OpenAPI document as a generated client needs it: every status the server can
answer is documented, and every error as ``application/problem+json``.

FastAPI documents its own 422 as ``application/json`` with its ``HTTPValidationError``
shape, which our handlers never send, and leaves out what the middleware and the
JSON reader answer for any operation: 400 (an unparsable body), 413 (a body over the
limit), 429 (a rate limit), 503 (the database busy or unreachable). This rewrites the
generated document once, at first use.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from fleet.api.models.common import PROBLEM_DESCRIPTIONS, Problem

__all__ = ["install_openapi"]

_PROBLEM = "application/problem+json"
_FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")


def install_openapi(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    problem = {"$ref": "#/components/schemas/Problem"}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name in _FASTAPI_ONLY:
        components.pop(name, None)
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            extra = ["429", "503"]
            if "requestBody" in operation:
                extra += ["400", "413"]
            if operation.get("parameters") or "requestBody" in operation:
                extra.append("422")
            for status in extra:
                responses.setdefault(status, {"description": PROBLEM_DESCRIPTIONS[int(status)]})
            for status, response in responses.items():
                if status[0] in "45":
                    response["content"] = {_PROBLEM: {"schema": problem}}
    return schema
