"""The alarm domain: rules, workflow, SLA, outbox records. No I/O."""

__all__: list[str] = []
