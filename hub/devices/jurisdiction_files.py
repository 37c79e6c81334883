"""Jurisdiction trees from files: a CSV (code,name,level,parent_code; Chinese headers
and level words too) or a YAML list, as the registry's tree import reads them."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from camera_registry.jurisdiction import JurisdictionNode

__all__ = ["parse_jurisdictions"]

_JURISDICTION_HEADERS: Mapping[str, str] = {
    "code": "code",
    "编码": "code",
    "辖区编码": "code",
    "name": "name",
    "名称": "name",
    "辖区名称": "name",
    "level": "level",
    "级别": "level",
    "层级": "level",
    "parent_code": "parent_code",
    "parent": "parent_code",
    "上级编码": "parent_code",
    "上级": "parent_code",
}
_LEVEL_WORDS: Mapping[str, str] = {
    "区": "district",
    "区县": "district",
    "街道": "town",
    "镇": "town",
    "乡镇": "town",
    "社区": "village",
    "村": "village",
    "网格": "grid",
    "微网格": "micro_grid",
}


def parse_jurisdictions(data: bytes, filename: str) -> list[JurisdictionNode]:
    """Jurisdiction nodes from a CSV (code,name,level,parent_code; zh headers too) or YAML list.

    Raises ValueError naming the first bad entry.
    """
    text = data.decode("utf-8-sig")
    records: list[dict[str, Any]]
    if filename.lower().endswith((".yaml", ".yml")):
        loaded = yaml.safe_load(text)
        if isinstance(loaded, dict):
            loaded = loaded.get("jurisdictions")
        if not isinstance(loaded, list):
            raise ValueError("the YAML must be a list of nodes (or jurisdictions: [...])")
        records = [dict(item) for item in loaded if isinstance(item, dict)]
    else:
        reader = csv.DictReader(io.StringIO(text))
        records = []
        for raw in reader:
            record: dict[str, Any] = {}
            for header, value in raw.items():
                key = _JURISDICTION_HEADERS.get((header or "").strip().lower())
                if key is not None:
                    record[key] = (value or "").strip() or None
            records.append(record)
    nodes = []
    for number, record in enumerate(records, 1):
        level = record.get("level")
        if isinstance(level, str):
            record["level"] = _LEVEL_WORDS.get(level, level)
        if record.get("parent_code") is not None:
            record["parent_code"] = str(record["parent_code"])
        if record.get("code") is not None:
            record["code"] = str(record["code"])
        try:
            nodes.append(JurisdictionNode.model_validate(record))
        except ValidationError as exc:
            first = exc.errors(include_input=False, include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"entry {number}: {where}: {first['msg']}") from exc
    return nodes
