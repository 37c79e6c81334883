"""Alarm title, SOP and broadcast message templates: `{name}` and `{payload.field}`
placeholders, checked when a rule is loaded and filled when an alarm opens.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["render_template"]

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?:\.([A-Za-z0-9_\-]+))?\}")
_PLAIN_FIELDS = frozenset(
    {"type", "device_id", "device_name", "kind", "kind_name", "project", "jurisdiction", "priority"}
)


def _check_template(template: str) -> str:
    """Refuse placeholders that would render as nothing useful or leak attributes."""
    for match in _PLACEHOLDER.finditer(template):
        name, sub = match.group(1), match.group(2)
        if name == "payload":
            if sub is None:
                raise ValueError("use {payload.<field>} to insert a payload field")
        elif name not in _PLAIN_FIELDS or sub is not None:
            allowed = ", ".join(sorted(_PLAIN_FIELDS))
            raise ValueError(
                f"unknown placeholder {match.group(0)!r}; use {allowed} or payload.<field>"
            )
    leftover = _PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise ValueError(f"unbalanced or malformed braces in template {template!r}")
    return template


def render_template(template: str, values: Mapping[str, str], payload: Mapping[str, Any]) -> str:
    """Fill `{name}` and `{payload.field}` placeholders; missing values render empty."""

    def fill(match: re.Match[str]) -> str:
        name, sub = match.group(1), match.group(2)
        if name == "payload":
            value = payload.get(sub or "")
            return "" if value is None else str(value)
        return values.get(name, "")

    return _PLACEHOLDER.sub(fill, template)
