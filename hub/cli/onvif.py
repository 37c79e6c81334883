"""`gridwatch devices probe ID` and `gridwatch onvif discover --interface IP`.

Both run against the configured storage without a running hub: the probe
decrypts the device's login with the hub's credential key, stores the result
on the device (audited as `cli:<user>`), and prints what the camera said.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TextIO

from hub.auth.principal import cli_actor
from hub.config import Settings

__all__ = ["register"]

#: Exit status of a probe the camera failed, by failure class.
FAILURE_EXIT = {"auth": 10, "unreachable": 11, "timeout": 12, "protocol": 13, "refused": 14}


def _probe_group(subparsers: Any, onvif_actions: Any) -> Any:
    """`devices` when the registry's command group is there (`devices probe ID`), else `onvif`."""
    try:
        from hub.cli.devices import device_actions

        return device_actions(subparsers)
    except (ImportError, KeyError):
        return onvif_actions


def register(subparsers: Any) -> None:
    """Add `devices probe` (or `onvif probe`) and the `onvif` command group."""
    parser = subparsers.add_parser("onvif", help="discover ONVIF cameras")
    sub = parser.add_subparsers(dest="onvif_command", required=True, metavar="ACTION")
    probe = _probe_group(subparsers, sub).add_parser(
        "probe",
        help="probe a registered ONVIF camera and store its model, profiles and stream URIs",
    )
    probe.add_argument("device_id", metavar="ID", help="registry id of the camera")
    probe.set_defaults(func=_cmd_probe)
    discover = sub.add_parser("discover", help="WS-Discovery: list cameras not yet registered")
    discover.add_argument(
        "--interface", required=True, metavar="IP", help="local IPv4 address to probe from"
    )
    discover.add_argument("--timeout", type=float, default=None, help="seconds to collect answers")
    discover.set_defaults(func=_cmd_discover)


def _actor() -> str:
    return cli_actor()


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[Any]:
    from hub.crypto import CredentialCipher, load_keyring
    from hub.devices.registry import Registry
    from hub.onvif.service import OnvifService
    from hub.storage import open_store

    store = open_store(
        settings.storage_url(),
        pool_size=1,
        retention_days=settings.storage.retention_days,
        compress_after_days=settings.storage.compress_after_days,
    )
    async with store:
        registry = Registry(store, CredentialCipher(load_keyring(settings.credentials_key_path())))
        # No event channels from the command line: only probe and discovery.
        service = OnvifService(settings.onvif, store=store, registry=registry)
        try:
            yield service
        finally:
            await service.stop()


def _print_probe(outcome: Any, out: TextIO) -> None:
    result = outcome.result
    info = result.device
    out.write(f"device    {outcome.device_id} at {result.host}:{result.port}\n")
    out.write(f"vendor    {info.manufacturer}\n")
    out.write(f"model     {info.model}\n")
    out.write(f"firmware  {info.firmware_version}\n")
    out.write(f"serial    {info.serial_number}\n")
    offset = result.clock_offset
    shown = f"{offset.total_seconds():+.1f} s" if offset is not None else "unknown"
    out.write(f"clock     camera minus hub {shown}\n")
    out.write(f"profiles  {len(result.profiles)}\n")
    for profile in result.profiles:
        size = f"{profile.width}x{profile.height}" if profile.width else "?"
        out.write(f"  {profile.token}  {profile.encoding or '?'} {size}\n")
        out.write(f"    stream    {profile.stream_uri or '-'}\n")
        out.write(f"    snapshot  {profile.snapshot_uri or '-'}\n")
    for warning in result.warnings:
        out.write(f"warning   {warning}\n")
    changed = ", ".join(sorted(outcome.changed)) or "nothing"
    out.write(f"stored    {changed} changed on the device\n")


def _cmd_probe(args: argparse.Namespace) -> int:
    from hub.cli import settings_from
    from hub.onvif.probes import OnvifUnavailable, ProbeFailed

    settings = settings_from(args)

    async def run() -> int:
        async with _service(settings) as service:
            try:
                outcome = await service.probe_device(args.device_id, actor=_actor())
            except LookupError:
                print(f"no device {args.device_id}", file=sys.stderr)
                return 4
            except OnvifUnavailable as exc:
                print(f"cannot probe {args.device_id}: {exc}", file=sys.stderr)
                return 5
            except ProbeFailed as exc:
                print(f"probe failed: {exc.failure.value}: {exc}", file=sys.stderr)
                return FAILURE_EXIT.get(exc.failure.value, 1)
        _print_probe(outcome, sys.stdout)
        return 0

    return asyncio.run(run())


def _cmd_discover(args: argparse.Namespace) -> int:
    from hub.cli import settings_from

    settings = settings_from(args)

    async def run() -> int:
        async with _service(settings) as service:
            try:
                found = await service.discover(args.interface, timeout=args.timeout)
            except OSError as exc:
                print(f"cannot probe from {args.interface}: {exc}", file=sys.stderr)
                return 5
        new = [f for f in found if f.device_id is None]
        for item in new:
            c = item.candidate
            address = f"{item.host}:{item.port}" if item.host else "?"
            label = c.name or c.hardware or ""
            print(f"{address}\t{c.endpoint}\t{label}\t{' '.join(c.xaddrs)}")
        print(
            f"{len(new)} camera(s) not registered, {len(found) - len(new)} already registered",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(run())
