"""Writes ``adapters/mqtt/schemas/*.json`` from the payload models.

Run ``python -m adapters.mqtt.schemagen`` after changing a payload model; a unit test
fails while the committed files and the models disagree.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from adapters.mqtt.models import json_schemas

__all__ = ["SCHEMA_DIR", "render_schemas", "write_schemas"]

logger = logging.getLogger(__name__)

SCHEMA_DIR = Path(__file__).with_name("schemas")


def render_schemas() -> dict[str, str]:
    """File name → exact file text of every schema document."""
    return {
        f"{stem}.json": json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for stem, schema in json_schemas().items()
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write the schema files into `directory`; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    for path in write_schemas():
        logger.info("wrote %s", path)
