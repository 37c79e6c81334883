"""The one error every sink raises when a delivery did not happen."""

from __future__ import annotations

__all__ = ["DeliveryFailed"]


class DeliveryFailed(Exception):
    """The receiver did not confirm the message.

    `permanent`: retrying the same message cannot succeed (dead-letter it now).
    `gone`: the endpoint says it no longer exists (HTTP 410): disable the sink
    until an operator re-enables it; queued rows wait for that.
    """

    def __init__(self, reason: str, *, permanent: bool = False, gone: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.gone = gone
