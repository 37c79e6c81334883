"""`gridwatch users …` and `gridwatch apikeys …`: accounts and machine keys from the shell.

Passwords are read from stdin (`--password-stdin`, for scripts) or generated: a
generated password is printed once and must be changed at the first login.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

from hub.auth.principal import Role, cli_actor
from hub.auth.service import AccountError, Authenticator, generate_password
from hub.cli import settings_from
from hub.storage import open_store

__all__ = ["register"]

T = TypeVar("T")
_ACTOR = cli_actor()


def _with_auth(args: argparse.Namespace, work: Callable[[Authenticator], Awaitable[T]]) -> T:
    settings = settings_from(args)

    async def run() -> T:
        store = open_store(
            settings.storage_url(),
            pool_size=2,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        async with store:
            auth = Authenticator(store, settings.auth)
            await auth.refresh_tree()
            return await work(auth)

    return asyncio.run(run())


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, must change): from stdin, or generated and shown once."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n"), False
    return generate_password(), True


def _fail(exc: AccountError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1


def _cmd_add(args: argparse.Namespace) -> int:
    password, generated = _password(args)

    async def work(auth: Authenticator) -> None:
        await auth.create_user(
            args.username,
            password,
            args.role,
            args.jurisdiction,
            actor=_ACTOR,
            must_change=generated,
            display_name=args.display_name,
        )

    try:
        _with_auth(args, work)
    except AccountError as exc:
        return _fail(exc)
    if generated:
        print(f"user {args.username}: one-time password {password} (change it at first login)")
    else:
        print(f"user {args.username} added")
    return 0


def _cmd_passwd(args: argparse.Namespace) -> int:
    password, generated = _password(args)

    async def work(auth: Authenticator) -> None:
        await auth.set_password(args.username, password, actor=_ACTOR, must_change=generated)

    try:
        _with_auth(args, work)
    except AccountError as exc:
        return _fail(exc)
    if generated:
        print(f"user {args.username}: one-time password {password} (change it at first login)")
    else:
        print(f"password of {args.username} set; its sessions were ended")
    return 0


def _toggle(disabled: bool | None, unlock: bool = False) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        async def work(auth: Authenticator) -> None:
            await auth.update_user(args.username, actor=_ACTOR, disabled=disabled, unlock=unlock)

        try:
            _with_auth(args, work)
        except AccountError as exc:
            return _fail(exc)
        done = "unlocked" if unlock else "disabled" if disabled else "enabled"
        print(f"user {args.username} {done}")
        return 0

    return command


def _cmd_list(args: argparse.Namespace) -> int:
    users = _with_auth(args, lambda auth: auth.users())
    for user in users:
        flags = [
            f
            for f, on in (("disabled", user.disabled), ("must-change", user.must_change_password))
            if on
        ]
        print(
            f"{user.username}\t{user.role}\t{','.join(user.jurisdictions)}"
            f"\t{' '.join(flags) or '-'}"
        )
    return 0


def _cmd_key_add(args: argparse.Namespace) -> int:
    try:
        created = _with_auth(
            args,
            lambda auth: auth.create_api_key(args.name, args.role, args.jurisdiction, actor=_ACTOR),
        )
    except AccountError as exc:
        return _fail(exc)
    print(f"API key {created.record.id} ({args.name}); send it as:")
    print(f"Authorization: Bearer {created.token}")
    print("the token is shown only now", file=sys.stderr)
    return 0


def _cmd_key_list(args: argparse.Namespace) -> int:
    for key in _with_auth(args, lambda auth: auth.api_keys()):
        state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
        print(f"{key.id}\t{key.name}\t{key.role}\t{','.join(key.jurisdictions)}\t{state}")
    return 0


def _cmd_key_revoke(args: argparse.Namespace) -> int:
    if not _with_auth(args, lambda auth: auth.revoke_api_key(args.key_id, actor=_ACTOR)):
        print(f"error: no active API key {args.key_id}", file=sys.stderr)
        return 1
    print(f"API key {args.key_id} revoked")
    return 0


def _scope_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument(
        "--jurisdiction",
        action="append",
        required=True,
        metavar="CODE",
        help="jurisdiction code it may see (repeat for several; / for everything)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `users` and `apikeys` command groups."""
    users = subparsers.add_parser("users", help="console user accounts")
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user (password generated unless --password-stdin)")
    add.add_argument("username")
    _scope_args(add)
    add.add_argument("--display-name", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(func=_cmd_add)
    passwd = actions.add_parser("passwd", help="set or reset a password; ends the user's sessions")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.set_defaults(func=_cmd_passwd)
    for name, help_text, func in (
        ("disable", "disable a user (ends its sessions)", _toggle(True)),
        ("enable", "enable a disabled user", _toggle(False)),
        ("unlock", "lift a lockout after failed logins", _toggle(None, unlock=True)),
    ):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("username")
        sub.set_defaults(func=func)
    actions.add_parser("list", help="list users").set_defaults(func=_cmd_list)

    keys = subparsers.add_parser("apikeys", help="API keys for machine integrations")
    key_actions = keys.add_subparsers(dest="apikeys_command", required=True, metavar="ACTION")
    key_add = key_actions.add_parser("add", help="create a key; its token is printed once")
    key_add.add_argument("name")
    _scope_args(key_add)
    key_add.set_defaults(func=_cmd_key_add)
    key_actions.add_parser("list", help="list keys (never their secrets)").set_defaults(
        func=_cmd_key_list
    )
    revoke = key_actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.set_defaults(func=_cmd_key_revoke)
