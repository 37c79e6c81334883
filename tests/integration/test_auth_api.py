"""Logins, sessions, CSRF, lockout, API keys, user admin and the audit log, over HTTP.

Runs on SQLite and on the real PostgreSQL server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.auth import audit_storage as audit_log
from hub.auth.guards import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, origin_allowed
from hub.auth.service import check_password_policy, token_hash
from hub.config import load_settings
from hub.runtime import Hub

GOOD = "Tr0ub4dor&3-horse"
OTHER_GOOD = "C0rrect-Battery-Staple"


@pytest.fixture(params=["sqlite", "postgres"])
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    url = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    settings = load_settings(
        None,
        data_dir=tmp_path,
        storage={"url": url},
        auth={"lockout_threshold": 3, "lockout_minutes": 10},
    )
    async with Hub(settings) as running:
        yield running


@pytest.fixture
async def client(hub: Hub) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as c:
        yield c


async def login(client: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def admin_client(hub: Hub, client: httpx.AsyncClient) -> str:
    """Log in as the first admin, change the one-time password; return the CSRF token."""
    assert hub.first_admin_password is not None
    first = await login(client, "admin", hub.first_admin_password)
    assert first["must_change_password"] is True
    changed = await client.post(
        "/api/auth/password",
        json={"current_password": hub.first_admin_password, "new_password": GOOD},
        headers={CSRF_HEADER: first["csrf_token"]},
    )
    assert changed.status_code == 204, changed.text
    again = await login(client, "admin", GOOD)
    token: str = again["csrf_token"]
    return token


async def test_first_start_creates_admin_who_must_change_the_password(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    assert hub.first_admin_password is not None
    body = await login(client, "admin", hub.first_admin_password)
    assert body["role"] == "admin" and body["scope_paths"] == ["/"]
    # Until the password is changed, nothing but /me, logout and the change itself.
    blocked = await client.get("/api/users")
    assert blocked.status_code == 403
    assert blocked.json()["title"] == "Password change required"
    assert (await client.get("/api/auth/me")).json()["must_change_password"] is True
    # A second start does not create another admin.
    assert await hub.auth.ensure_first_admin() is None


async def test_session_cookie_flags_and_logout(hub: Hub, client: httpx.AsyncClient) -> None:
    csrf = await admin_client(hub, client)
    response = await client.post("/api/auth/login", json={"username": "admin", "password": GOOD})
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/" in session
    assert "Secure" not in session  # plain http here; https marks it Secure
    readable = next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
    assert "HttpOnly" not in readable
    csrf = response.json()["csrf_token"]
    me = await client.get("/api/auth/me")
    assert me.json()["username"] == "admin"
    assert (await client.post("/api/auth/logout", headers={CSRF_HEADER: csrf})).status_code == 204
    client.cookies.clear()
    assert (await client.get("/api/auth/me")).status_code == 401


async def test_secure_cookie_over_https(hub: Hub) -> None:
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="https://hub.test") as tls:
        assert hub.first_admin_password is not None
        response = await tls.post(
            "/api/auth/login", json={"username": "admin", "password": hub.first_admin_password}
        )
    session = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    assert "Secure" in session


async def test_writes_with_a_session_need_the_csrf_header(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    csrf = await admin_client(hub, client)
    user = {"username": "op1", "password": GOOD, "role": "operator", "jurisdictions": ["/"]}
    missing = await client.post("/api/users", json=user)
    assert missing.status_code == 403 and missing.json()["title"] == "CSRF check failed"
    wrong = await client.post("/api/users", json=user, headers={CSRF_HEADER: "forged"})
    assert wrong.status_code == 403
    ok = await client.post("/api/users", json=user, headers={CSRF_HEADER: csrf})
    assert ok.status_code == 201, ok.text
    assert GOOD not in ok.text and "argon2" not in ok.text


async def test_wrong_passwords_lock_the_account_and_are_audited(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    await hub.auth.create_user("op2", GOOD, "operator", ["/"], actor="system:test")
    for _ in range(3):
        bad = await client.post("/api/auth/login", json={"username": "op2", "password": "nope"})
        assert bad.status_code == 401
    locked = await client.post("/api/auth/login", json={"username": "op2", "password": GOOD})
    assert locked.status_code == 429
    assert 0 < int(locked.headers["retry-after"]) <= 600
    unknown = await client.post("/api/auth/login", json={"username": "ghost", "password": GOOD})
    assert unknown.status_code == 401
    # An unknown name gets the same answer as a wrong password: no account probing.
    assert unknown.json()["detail"] == "invalid user name or password"
    actions = [e.action for e in await audit_log.query(hub.store, actor="user:op2")]
    assert actions.count("login.failed") == 3 and "login.locked" in actions
    lockouts = await audit_log.query(hub.store, action="user.lockout")
    assert lockouts and lockouts[0].target == "op2" and lockouts[0].remote_addr == "127.0.0.1"
    # An admin can unlock it.
    csrf = await admin_client(hub, client)
    unlocked = await client.patch(
        "/api/users/op2", json={"unlock": True}, headers={CSRF_HEADER: csrf}
    )
    assert unlocked.status_code == 200 and unlocked.json()["locked_until"] is None
    client.cookies.clear()
    await login(client, "op2", GOOD)


async def test_weak_passwords_are_refused(hub: Hub, client: httpx.AsyncClient) -> None:
    assert check_password_policy("short1A!", "x")
    assert check_password_policy("alice-Secret-2024", "alice")
    assert check_password_policy("alllowercaseletters", "bob")
    assert not check_password_policy(GOOD, "bob")
    csrf = await admin_client(hub, client)
    weak = await client.post(
        "/api/users",
        json={
            "username": "op3",
            "password": "password1234",
            "role": "operator",
            "jurisdictions": ["/"],
        },
        headers={CSRF_HEADER: csrf},
    )
    assert weak.status_code == 422 and "password" in weak.json()["detail"]


async def test_password_change_ends_other_sessions(hub: Hub, client: httpx.AsyncClient) -> None:
    await hub.auth.create_user("op4", GOOD, "operator", ["/"], actor="system:test")
    first = await login(client, "op4", GOOD)
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as other:
        await login(other, "op4", GOOD)
        changed = await client.post(
            "/api/auth/password",
            json={"current_password": GOOD, "new_password": OTHER_GOOD},
            headers={CSRF_HEADER: first["csrf_token"]},
        )
        assert changed.status_code == 204
        assert (await other.get("/api/auth/me")).status_code == 401
    await login(client, "op4", OTHER_GOOD)


async def test_idle_sessions_expire(hub: Hub, client: httpx.AsyncClient) -> None:
    await hub.auth.create_user("op5", GOOD, "operator", ["/"], actor="system:test")
    await login(client, "op5", GOOD)
    token = client.cookies[SESSION_COOKIE]
    later = datetime.now(UTC) + timedelta(minutes=hub.settings.auth.session_idle_minutes + 1)
    assert await hub.auth.session(token, None, later) is None
    assert await hub.auth.session(token, None, datetime.now(UTC)) is not None
    async with hub.store.reading() as tx:
        row = await tx.fetchone("SELECT id FROM sessions")
    # Only the token's hash is stored.
    assert row is not None and row[0] == token_hash(token) and row[0] != token


async def test_api_keys_authenticate_with_role_and_scope(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    csrf = await admin_client(hub, client)
    created = await client.post(
        "/api/apikeys",
        json={"name": "police dispatch", "role": "dispatcher", "jurisdictions": ["/150102/"]},
        headers={CSRF_HEADER: csrf},
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    key_id = created.json()["id"]
    assert token.startswith(f"gw_{key_id}_")
    listed = await client.get("/api/apikeys")
    assert "token" not in listed.json()[0] and token not in listed.text
    transport = httpx.ASGITransport(app=hub.app())
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as machine:
        bearer = {"Authorization": f"Bearer {token}"}
        me = (await machine.get("/api/auth/me", headers=bearer)).json()
        assert me["role"] == "dispatcher" and me["scope_paths"] == ["/150102/"]
        assert me["username"] == "key:police dispatch" and me["via"] == "api_key"
        # A key has a role: no user admin. No cookie, so no CSRF needed either.
        assert (await machine.get("/api/users", headers=bearer)).status_code == 403
        forged = {"Authorization": f"Bearer gw_{key_id}_wrong-secret"}
        assert (await machine.get("/api/auth/me", headers=forged)).status_code == 401
        revoked = await client.delete(f"/api/apikeys/{key_id}", headers={CSRF_HEADER: csrf})
        assert revoked.status_code == 204
        assert (await machine.get("/api/auth/me", headers=bearer)).status_code == 401
    actions = [e.action for e in await audit_log.query(hub.store, action="apikey.")]
    assert actions == ["apikey.revoke", "apikey.create"]


async def test_jurisdiction_codes_resolve_through_the_tree(hub: Hub) -> None:
    has_tree = False
    async with hub.store.reading() as tx:
        from hub.auth.storage import jurisdictions_available

        has_tree = await jurisdictions_available(tx, hub.store.dialect)
    if not has_tree:
        pytest.skip("the registry's jurisdiction table is not in this build")
    async with hub.store.transaction() as tx:
        await tx.execute(
            "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
            " VALUES (%s, %s, %s, NULL, %s)",
            ("150102", "新城区", "district", "/150102/"),
        )
        await tx.execute(
            "INSERT INTO jurisdictions (code, name, level, parent_code, path)"
            " VALUES (%s, %s, %s, %s, %s)",
            ("150102001", "海拉尔东路街道", "town", "150102", "/150102/150102001/"),
        )
    await hub.auth.refresh_tree()
    async with hub.store.reading() as tx:
        paths = await hub.auth.scope_paths(tx, ("150102001", "999999"))
    assert paths == ("/150102/150102001/",)


async def test_audit_log_is_for_auditors_and_kept_180_days(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    await hub.auth.create_user("aud", GOOD, "auditor", ["/"], actor="system:test")
    await hub.auth.create_user("op6", GOOD, "operator", ["/"], actor="system:test")
    now = datetime.now(UTC)
    async with hub.store.transaction() as tx:
        await audit_log.record(tx, "user:op6", "alarm.acknowledge", "a-1", "10.0.0.7", {}, at=now)
        await audit_log.record(
            tx, "user:op6", "alarm.note", "a-2", None, {}, at=now - timedelta(days=179)
        )
        await audit_log.record(
            tx, "user:op6", "alarm.close", "a-3", None, {}, at=now - timedelta(days=181)
        )
    await login(client, "op6", GOOD)
    assert (await client.get("/api/audit")).status_code == 403
    client.cookies.clear()
    await login(client, "aud", GOOD)
    page = (await client.get("/api/audit", params={"action": "alarm.", "limit": 10})).json()
    # Newest row first (by insertion).
    assert [e["action"] for e in page["items"]] == [
        "alarm.close",
        "alarm.note",
        "alarm.acknowledge",
    ]
    assert {e["target"] for e in page["items"]} == {"a-1", "a-2", "a-3"}
    assert page["items"][-1]["remote_addr"] == "10.0.0.7"
    logins = (await client.get("/api/audit", params={"action": "login"})).json()["items"]
    assert {e["actor"] for e in logins} >= {"user:op6", "user:aud"}
    # Even a configured 30 days keeps 180: only the 181-day-old row goes.
    removed = await audit_log.purge(hub.store, now, keep_days=30)
    assert removed == 1
    left = {e.target for e in await audit_log.query(hub.store, action="alarm.")}
    assert left == {"a-1", "a-2"}


def test_websocket_origin_rule() -> None:
    assert origin_allowed(None, "hub:8080")
    assert origin_allowed("http://hub:8080", "hub:8080")
    assert origin_allowed("https://HUB:8080", "hub:8080")
    assert not origin_allowed("http://evil.example", "hub:8080")
    assert not origin_allowed("null", "hub:8080")
    assert origin_allowed("https://wall.example", "hub:8080", ["https://wall.example"])


async def test_after_a_lockout_unknown_and_existing_names_get_the_same_answer(
    hub: Hub, client: httpx.AsyncClient
) -> None:
    await hub.auth.create_user("op3", GOOD, "operator", ["/"], actor="system:test")
    answers: dict[str, list[httpx.Response]] = {}
    for name in ("op3", "nobody-here"):
        answers[name] = [
            await client.post("/api/auth/login", json={"username": name, "password": "nope"})
            for _ in range(4)
        ]
        # Even the right password of the locked account is refused the same way.
        answers[name].append(
            await client.post("/api/auth/login", json={"username": name, "password": GOOD})
        )
    existing, unknown = answers["op3"], answers["nobody-here"]
    assert [r.status_code for r in existing] == [401, 401, 401, 429, 429]
    assert [r.status_code for r in unknown] == [r.status_code for r in existing]
    for mine, theirs in zip(existing, unknown, strict=True):
        assert mine.json() == theirs.json()
        assert mine.headers["content-type"] == theirs.headers["content-type"]
        assert ("retry-after" in mine.headers) == ("retry-after" in theirs.headers)
    assert 0 < int(unknown[-1].headers["retry-after"]) <= 600
    lockouts = await audit_log.query(hub.store, action="user.lockout")
    assert {entry.target for entry in lockouts} == {"op3", "nobody-here"}
