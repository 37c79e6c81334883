"""The `gridwatch` command.

Command groups live in their own modules under `hub.cli`, each with a
`register(subparsers)` function; `COMMAND_GROUPS` lists them.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hub import __version__
from hub.config import ConfigError, Settings, example_config, load_settings
from hub.logging import configure_logging
from hub.storage import StorageError, open_store

__all__ = ["COMMAND_GROUPS", "build_parser", "main", "settings_from"]

log = logging.getLogger("gridwatch")

Command = Callable[[argparse.Namespace], int]


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    configure_logging(
        settings.logging.level,
        json_lines=settings.logging.json_lines,
        http_client_level=settings.logging.http_client_level,
    )
    return settings


def _cmd_run(args: argparse.Namespace) -> int:
    from hub.runtime import serve

    settings = _settings(args)
    asyncio.run(serve(settings))
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def migrate() -> int:
        store = open_store(
            settings.storage_url(),
            pool_size=1,
            retention_days=settings.storage.retention_days,
            compress_after_days=settings.storage.compress_after_days,
        )
        async with store:
            version = await store.schema_version()
        print(f"schema version {version} ({store.backend})")
        return 0

    return asyncio.run(migrate())


def _cmd_config_check(args: argparse.Namespace) -> int:
    try:
        load_settings(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{args.file}: {len(exc.problems)} error(s)", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    return 0


def _cmd_config_example(args: argparse.Namespace) -> int:
    sys.stdout.write(example_config())
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"gridwatch {__version__}")
    return 0


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings for a command: the --config file (if any) plus the environment."""
    return _settings(args)


# Modules with a `register(subparsers)` function adding their commands.
COMMAND_GROUPS: tuple[str, ...] = (
    "hub.cli.devices",
    "hub.cli.keys",
    "hub.cli.patrol",
    "hub.cli.report",
    "hub.cli.onvif",
    "hub.cli.demo",
    "hub.cli.users",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="gridwatch", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML config file (default: embedded defaults)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the hub (API, writer, adapters)").set_defaults(func=_cmd_run)
    sub.add_parser("migrate", help="apply schema migrations and exit").set_defaults(
        func=_cmd_migrate
    )
    sub.add_parser("version", help="print the version").set_defaults(func=_cmd_version)

    config = sub.add_parser("config", help="check or print configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file, listing every error")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_cmd_config_check)
    config_sub.add_parser("example", help="print a commented example config").set_defaults(
        func=_cmd_config_example
    )
    for module_name in COMMAND_GROUPS:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gridwatch` console script."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"storage error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
