"""Audit actors have one form: user:<name>, key:<name>, system:<component>."""

from __future__ import annotations

import pytest

from hub.auth.principal import (
    Principal,
    Role,
    check_actor,
    cli_actor,
    key_actor,
    system_actor,
    user_actor,
)
from hub.devices.registry import Actor


def test_a_console_user_and_an_api_key_are_named_by_kind() -> None:
    user = Principal("duty", Role.OPERATOR, ("/",), via="session")
    key = Principal("key:police dispatch", Role.DISPATCHER, ("/",), via="api_key")
    assert user.actor == "user:duty"
    assert key.actor == "key:police dispatch"


def test_helpers_build_the_accepted_forms() -> None:
    assert user_actor("alice") == "user:alice"
    assert key_actor("cad") == "key:cad"
    assert system_actor("drill") == "system:drill"
    assert cli_actor().startswith("system:cli:")
    for actor in ("user:alice", "key:cad", "system:auth", cli_actor()):
        assert check_actor(actor) == actor


@pytest.mark.parametrize(
    "actor", ["alice", "", "cli:root", "user:", "user: ", "api_key:key:x", "session:alice", "drill"]
)
def test_any_other_form_is_refused(actor: str) -> None:
    with pytest.raises(ValueError, match="audit actor"):
        check_actor(actor)


def test_registry_actor_validates_itself() -> None:
    assert Actor("user:alice", "10.0.0.1").name == "user:alice"
    with pytest.raises(ValueError, match="audit actor"):
        Actor("cli:root")
    with pytest.raises(ValueError, match="needs a name"):
        user_actor(" ")
