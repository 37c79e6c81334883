"""Site rules change or add single rules by name on top of the built-in ones."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from alarms.models import AlarmCategory
from alarms.rules import DEFAULT_RULES
from hub.alarms import query_storage
from hub.alarms.config import AlarmSettings
from hub.alarms.engine import AlarmChange, AlarmEngine
from hub.alarms.storage import AlarmFilter
from hub.bus import EventBus
from hub.config import ConfigError, load_settings
from hub.storage import SqlStore
from tests.conftest import build_store
from tests.helpers import make_event
from tests.integration.alarm_support import Clock, add_device

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def yaml_blocks_with_rules(markdown: Path) -> list[str]:
    """The YAML examples of a document that set `alarms.rules`."""
    blocks = re.findall(r"```yaml\n(.*?)```", markdown.read_text(encoding="utf-8"), re.S)
    return [b for b in blocks if "rules" in (yaml.safe_load(b) or {}).get("alarms", {})]


def config_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("document", ["README.md", "docs/alarms.md"])
def test_the_documented_rule_examples_pass_config_check(document: str, tmp_path: Path) -> None:
    (example, *_) = yaml_blocks_with_rules(ROOT / document)
    path = tmp_path / "gridwatch.yaml"
    path.write_text(example, encoding="utf-8")
    done = config_check(path)
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    # The example does what it says: it keeps the built-ins and changes one by name.
    rules = load_settings(path).alarms.rule_set().rules
    by_name = {rule.name: rule for rule in rules}
    assert by_name["device_offline"].priority == 2
    assert not by_name["quality_fault"].enabled
    assert {rule.name for rule in DEFAULT_RULES.rules} <= set(by_name)


def test_a_changed_built_in_keeps_its_other_fields_and_its_place() -> None:
    settings = AlarmSettings.model_validate(
        {"rules": [{"name": "device_offline", "priority": 2, "match": {"device_kinds": ["panic"]}}]}
    )
    rules = settings.rule_set().rules
    assert [r.name for r in rules] == [r.name for r in DEFAULT_RULES.rules]
    (before,) = [r for r in DEFAULT_RULES.rules if r.name == "device_offline"]
    (after,) = [r for r in rules if r.name == "device_offline"]
    assert after.priority == 2 and after.match.device_kinds == ["panic"]
    assert after.match.kinds == before.match.kinds  # nested fields merge
    assert after.auto_close_on == before.auto_close_on and after.sop == before.sop


def test_new_rules_come_first_and_the_old_rule_set_shape_is_accepted() -> None:
    new = {
        "name": "school_panic",
        "match": {"kinds": ["panic.press"], "projects": ["schools"]},
        "type": "panic",
        "priority": 1,
        "category": "emergency",
        "title": "Panic alarm at school {jurisdiction}",
    }
    for given in ([new], {"rules": [new]}):
        rules = AlarmSettings.model_validate({"rules": given}).rule_set().rules
        assert rules[0].name == "school_panic"
        assert [r.name for r in rules[1:]] == [r.name for r in DEFAULT_RULES.rules]


def test_only_site_rules_when_the_built_ins_are_switched_off() -> None:
    rule = {
        "name": "only_panic",
        "match": {"kinds": ["panic.press"]},
        "type": "panic",
        "priority": 1,
        "category": "emergency",
        "title": "Panic",
    }
    settings = AlarmSettings.model_validate({"rules": [rule], "builtin_rules": False})
    assert [r.name for r in settings.rule_set().rules] == ["only_panic"]
    assert AlarmSettings().rule_set() == DEFAULT_RULES


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ([{"name": "device_offline", "priority": 7}], "rule 0 ('device_offline'): priority"),
        ([{"name": "brand_new", "priority": 1}], "rule 0 ('brand_new'): match: Field required"),
        ([{"priority": 1}], "rule 0: every rule needs a name"),
        (
            [{"name": "quality_fault", "enabled": False}, {"name": "quality_fault"}],
            "rule 1 ('quality_fault'): the name is used twice",
        ),
        (
            [{"name": "device_offline", "category": "security"}],
            "auto_close_on is only for maintenance rules",
        ),
    ],
)
def test_config_check_names_the_rule_that_is_wrong(
    rules: list[dict[str, Any]], expected: str, tmp_path: Path
) -> None:
    path = tmp_path / "gridwatch.yaml"
    path.write_text(yaml.safe_dump({"alarms": {"rules": rules}}), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert any(expected in problem for problem in caught.value.problems), caught.value.problems
    done = config_check(path)
    assert done.returncode == 1 and expected in done.stderr


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    backend = build_store(request.param, request, tmp_path)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def test_a_site_override_decides_the_stored_alarm(store: SqlStore) -> None:
    settings = AlarmSettings.model_validate(
        {"rules": [{"name": "device_offline", "priority": 2, "title": "Offline: {device_name}"}]}
    )
    engine = AlarmEngine(store, settings, clock=Clock(), bus=EventBus[AlarmChange]("changes"))
    await add_device(store, "btn-001", kind="panic", name="School 1 button")
    offline = make_event(1, device_id="btn-001", kind="health.offline", source="mqtt")
    result = await store.ingest([offline], in_transaction=engine.in_transaction)
    engine.after_commit(result)

    (stored,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    assert stored.alarm.priority.level == 2
    assert stored.alarm.title == "Offline: School 1 button"
    assert stored.alarm.category is AlarmCategory.MAINTENANCE  # kept from the built-in

    # The built-in's auto-close still applies to the changed rule.
    online = make_event(2, device_id="btn-001", kind="health.online", source="mqtt")
    engine.after_commit(await store.ingest([online], in_transaction=engine.in_transaction))
    (closed,) = await query_storage.search(engine.store, AlarmFilter(), scope_paths=None, limit=10)
    assert closed.alarm.state.value == "closed"
