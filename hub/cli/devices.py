"""`gridwatch devices import|export|list|show` and `gridwatch jurisdictions import`.

Other modules add device actions (e.g. `devices probe`) with
`device_actions(subparsers).add_parser(...)` from their own `register`, listed
after this module in `COMMAND_GROUPS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from camera_registry.boundaries import BoundaryError, parse_boundaries
from camera_registry.models import DeviceKind, HealthState
from hub.auth.principal import cli_actor
from hub.cli import settings_from
from hub.crypto import CredentialCipher, load_keyring
from hub.devices.boundaries import import_boundaries
from hub.devices.registry import Actor, Registry, parse_jurisdictions
from hub.devices.storage import DeviceFilter
from hub.storage import open_store

__all__ = ["device_actions", "open_registry", "register"]

_ACTIONS: dict[int, argparse._SubParsersAction[argparse.ArgumentParser]] = {}


def device_actions(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The `devices` group's actions, for other modules to add commands to."""
    return _ACTIONS[id(subparsers)]


def _actor() -> Actor:
    return Actor(cli_actor())


@asynccontextmanager
async def open_registry(args: argparse.Namespace) -> AsyncIterator[Registry]:
    """A started registry on the configured storage, closed afterwards."""
    settings = settings_from(args)
    store = open_store(
        settings.storage_url(),
        pool_size=2,
        retention_days=settings.storage.retention_days,
        compress_after_days=settings.storage.compress_after_days,
    )
    keyring = load_keyring(settings.credentials_key_path())
    async with store:
        registry = Registry(
            store,
            CredentialCipher(keyring),
            linkage_radius_m=settings.registry.linkage_radius_m,
            linkage_limit=settings.registry.linkage_limit,
        )
        yield registry


async def _filter(registry: Registry, args: argparse.Namespace) -> DeviceFilter:
    subtree = None
    if args.jurisdiction:
        subtree = await registry.path_of(args.jurisdiction.upper())
        if subtree is None:
            raise SystemExit(f"unknown jurisdiction code {args.jurisdiction}")
    return DeviceFilter(
        kinds=tuple(args.kind or ()),
        project=args.project,
        subtree=subtree,
        enabled=args.enabled,
        health=args.health,
        text=args.q,
    )


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", action="append", choices=[k.value for k in DeviceKind])
    parser.add_argument("--project")
    parser.add_argument("--jurisdiction", help="node code: the node and everything under it")
    parser.add_argument("--enabled", type=lambda v: v.lower() in ("1", "true", "yes"), default=None)
    parser.add_argument("--health", choices=[h.value for h in HealthState])
    parser.add_argument("--q", help="text in the name, address or id")


def _cmd_import(args: argparse.Namespace) -> int:
    data = Path(args.file).read_bytes()

    async def run() -> int:
        async with open_registry(args) as registry:
            with tqdm(desc="rows", unit=" rows", file=sys.stderr, disable=None) as bar:

                def progress(rows: int) -> None:
                    bar.update(rows - bar.n)

                outcome = await registry.import_file(
                    data,
                    actor=_actor(),
                    scope=None,
                    dry_run=args.dry_run,
                    partial=args.partial,
                    progress=progress,
                )
        for error in outcome.errors:
            value = "" if error.value is None else f" {error.value!r}"
            print(
                f"row {error.row} [{error.column or '-'}]{value}: {error.reason}", file=sys.stderr
            )
        c = outcome.counts
        verb = "would create" if args.dry_run else "created"
        state = "written" if outcome.written else "nothing written"
        print(
            f"{outcome.rows} rows, {len({e.row for e in outcome.errors})} with errors; "
            f"{verb} {c.created}, updated {c.updated}, unchanged {c.unchanged} ({state})"
        )
        return 1 if outcome.errors and not args.partial else 0

    return asyncio.run(run())


def _cmd_export(args: argparse.Namespace) -> int:
    async def run() -> bytes:
        async with open_registry(args) as registry:
            flt = await _filter(registry, args)
            return await registry.export(flt, scope=None, fmt=args.format, lang=args.lang)

    data = asyncio.run(run())
    Path(args.output).write_bytes(data)
    print(f"wrote {args.output} ({len(data):,} bytes)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_registry(args) as registry:
            flt = await _filter(registry, args)
            page = await registry.list_devices(
                flt, scope=None, sort=args.sort, limit=args.limit, cursor=args.cursor
            )
        for item in page.items:
            d = item.device
            health = d.health.value if d.health else "unknown"
            print(f"{d.id}\t{d.kind.value}\t{d.jurisdiction or '-'}\t{health}\t{d.name}")
        if page.next_cursor:
            print(f"# more: --cursor {page.next_cursor}", file=sys.stderr)
        return 0

    return asyncio.run(run())


def _cmd_show(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with open_registry(args) as registry:
            found = await registry.get(args.id, scope=None)
        if found is None:
            print(f"no device {args.id}", file=sys.stderr)
            return 1
        data: dict[str, Any] = found.device.model_dump(mode="json")
        data["jurisdiction_path"] = found.jurisdiction_path
        print(json.dumps(data, ensure_ascii=False, indent=2))
        return 0

    return asyncio.run(run())


def _cmd_boundaries_import(path: Path, args: argparse.Namespace) -> int:
    try:
        boundaries = parse_boundaries(path.read_bytes())
    except BoundaryError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1

    async def run() -> int:
        async with open_registry(args) as registry:
            try:
                nodes, stored = await import_boundaries(registry, boundaries, actor=_actor())
            except ValueError as exc:
                print(f"{path}: {exc}", file=sys.stderr)
                return 1
        print(f"{stored} boundaries stored; {nodes} nodes created or changed")
        return 0

    return asyncio.run(run())


def _cmd_jurisdictions_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if path.suffix.lower() in (".geojson", ".json"):
        return _cmd_boundaries_import(path, args)
    try:
        nodes = parse_jurisdictions(path.read_bytes(), path.name)
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1

    async def run() -> int:
        async with open_registry(args) as registry:
            try:
                created, updated = await registry.upsert_jurisdictions(nodes, actor=_actor())
            except ValueError as exc:
                print(str(exc), file=sys.stderr)
                return 1
        print(f"{len(nodes)} nodes: created {created}, updated {updated}")
        return 0

    return asyncio.run(run())


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `devices` and `jurisdictions` command groups."""
    devices = subparsers.add_parser("devices", help="the device registry")
    actions = devices.add_subparsers(dest="devices_command", required=True, metavar="ACTION")
    _ACTIONS[id(subparsers)] = actions

    imp = actions.add_parser("import", help="import a CSV/XLSX device sheet")
    imp.add_argument("file", type=Path)
    imp.add_argument("--dry-run", action="store_true", help="report every bad row, write nothing")
    imp.add_argument("--partial", action="store_true", help="write the good rows despite bad ones")
    imp.set_defaults(func=_cmd_import)

    exp = actions.add_parser("export", help="export devices as CSV/XLSX")
    exp.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    exp.add_argument("--lang", choices=["zh", "en"], default="zh")
    exp.add_argument("--output", required=True, type=Path)
    _add_filters(exp)
    exp.set_defaults(func=_cmd_export)

    lst = actions.add_parser("list", help="list devices")
    _add_filters(lst)
    lst.add_argument(
        "--sort",
        default="id",
        choices=["id", "name", "kind", "project", "jurisdiction", "updated_at", "health"],
    )
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--cursor")
    lst.set_defaults(func=_cmd_list)

    show = actions.add_parser("show", help="show one device (never its credentials)")
    show.add_argument("id")
    show.set_defaults(func=_cmd_show)

    jur = subparsers.add_parser("jurisdictions", help="the jurisdiction tree")
    jur_actions = jur.add_subparsers(dest="jurisdictions_command", required=True, metavar="ACTION")
    jimp = jur_actions.add_parser(
        "import",
        help="load nodes from CSV (code,name,level,parent_code) or YAML, or their boundaries "
        "from a GeoJSON FeatureCollection (.geojson/.json, the code in each feature's properties)",
    )
    jimp.add_argument("file", type=Path)
    jimp.set_defaults(func=_cmd_jurisdictions_import)
