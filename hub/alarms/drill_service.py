"""Drills as a service: one runner per hub (one drill at a time), each run audited.

The route hands over what the administrator asked and gets the report back;
this service runs the drill (`hub.alarms.drill.DrillRunner`) and writes the
audit row, in its own transaction after the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hub.alarms.drill import DrillRunner
from hub.auth import audit_storage as audit_log
from hub.storage.base import SqlStore

__all__ = ["DrillService"]


class DrillService:
    """Runs drills through the hub's real path and audits each run."""

    def __init__(self, store: SqlStore, runner: DrillRunner) -> None:
        self._store = store
        self.runner = runner

    async def run(
        self,
        *,
        actor: str,
        remote_addr: str | None,
        presses: int,
        devices: Sequence[str] = (),
        slo_s: float = 2.0,
        interval_s: float = 0.5,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        """Run a drill and answer with its report (raises DrillError when it cannot run)."""
        report = await self.runner.run(
            presses, devices=devices, slo_s=slo_s, interval_s=interval_s, timeout_s=timeout_s
        )
        result = report.as_dict()
        async with self._store.transaction() as tx:
            await audit_log.record(
                tx,
                actor,
                "drill.run",
                "drill",
                remote_addr,
                {"presses": presses, "passed": result["passed"], "stages": result["stages"]},
            )
        return result
