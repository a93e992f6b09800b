"""Generate ``schemas/json/*.json`` from the models: ``python -m schemas.export [--check]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from schemas.components import SensorCalibration, Thresholds
from schemas.director import Delivery
from schemas.documents import DOCUMENT_KINDS
from schemas.dsse import Envelope
from schemas.provisioning import ProvisioningBundle

__all__ = ["JSON_DIR", "render_all"]

JSON_DIR = Path(__file__).parent / "json"


def render_all() -> dict[str, str]:
    models: dict[str, type[BaseModel]] = {
        **DOCUMENT_KINDS,
        "delivery": Delivery,
        "envelope": Envelope,
        "thresholds": Thresholds,
        "sensor_calibration": SensorCalibration,
        "provisioning_bundle": ProvisioningBundle,
    }
    rendered: dict[str, str] = {}
    for kind, model in sorted(models.items()):
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://tinyfleet.dev/schemas/{kind}.json"
        rendered[f"{kind}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in render_all().items():
        path = JSON_DIR / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        sys.stderr.write(f"stale JSON Schemas: {stale}; run python -m schemas.export\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
