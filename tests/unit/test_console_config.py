"""The console's map settings: the manual's example is valid, bad tile URLs are refused, and
the page's policy lets in images from the configured tile server only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from hub.api.routes.console import CONTENT_SECURITY_POLICY, content_security_policy
from hub.config import MapSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def yaml_blocks(document: str) -> list[str]:
    text = (ROOT / document).read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_manuals_map_example_is_a_valid_configuration(tmp_path: Path) -> None:
    (example,) = [b for b in yaml_blocks("docs/console.md") if "map" in yaml.safe_load(b)]
    path = tmp_path / "gridwatch.yaml"
    path.write_text(example, encoding="utf-8")
    settings = load_settings(path)
    assert settings.map.tile_url == "https://tiles.district.example/{z}/{x}/{y}.png"
    assert (settings.map.center_latitude, settings.map.center_longitude) == (40.60, 109.85)


def test_the_alarm_manuals_language_example_is_a_valid_rule(tmp_path: Path) -> None:
    (example,) = [b for b in yaml_blocks("docs/alarms.md") if "title_i18n" in b]
    path = tmp_path / "gridwatch.yaml"
    path.write_text(example, encoding="utf-8")
    rules = load_settings(path).alarms.rule_set().rules
    gate = next(rule for rule in rules if rule.name == "gate_forced")
    assert gate.texts({"device_name": "北门"}, {})["zh-CN"]["title"] == "大门被强行打开：北门"


@pytest.mark.parametrize(
    "url",
    [
        "https://tiles.example/{x}/{y}.png",  # no zoom level
        "ftp://tiles.example/{z}/{x}/{y}.png",
        "https://tiles.example/{z}/{x}/{y}.png tracker.example",
    ],
)
def test_tile_urls_that_cannot_be_templates_are_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="tile_url"):
        MapSettings(tile_url=url)


def test_the_page_policy_admits_the_tile_server_and_nothing_else() -> None:
    assert content_security_policy(None) == CONTENT_SECURITY_POLICY
    assert content_security_policy("/tiles/{z}/{x}/{y}.png") == CONTENT_SECURITY_POLICY
    own = content_security_policy("https://tiles.district.example/{z}/{x}/{y}.png")
    assert "img-src 'self' data: blob: https://tiles.district.example;" in own
    tianditu = content_security_policy(
        "https://t{s}.tianditu.gov.cn/DataServer?T=vec_w&x={x}&y={y}&l={z}&tk=KEY"
    )
    assert "img-src 'self' data: blob: https://*.tianditu.gov.cn;" in tianditu
    # Only images: scripts and connections stay the hub's own.
    assert "script-src 'self';" in tianditu and "connect-src 'self';" in tianditu
