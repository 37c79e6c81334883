"""Site-configured topic mappings: a new camera's event topic becomes an event kind.

A mapping says: notifications whose topic matches this glob carry their state
in this data item; these values mean "on" (and, if given, these mean "off");
the event kind is this. Topics and globs are compared without namespace
prefixes and without regard to case, so `tns1:RuleEngine/tnsacme:Fence/*`
and `RuleEngine/Fence/*` are the same glob.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

from adapters.onvif.notifications import NotificationMessage, normalize_topic
from adapters.onvif.topics import EventSignal, NotificationRejected
from camera_registry.events import Severity

__all__ = ["KIND_PATTERN", "TOPIC_GLOB_PATTERN", "TopicMapping"]

#: Event kinds a mapping may produce: dotted lower-case names, e.g. `onvif.fence_alarm`.
KIND_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
#: Topic globs: `/`-separated segments of names (optionally prefixed), `*` and `?`.
TOPIC_GLOB_PATTERN = r"^[A-Za-z0-9_.:*?\-]+(/[A-Za-z0-9_.:*?\-]+)*$"


def _normalize_glob(topic: str) -> str:
    return normalize_topic(topic).lower()


@dataclass(frozen=True, slots=True)
class TopicMapping:
    """One site mapping from a topic glob and a data item to an event kind."""

    name: str
    topic: str
    items: tuple[str, ...]
    kind: str
    true_values: frozenset[str] = frozenset({"true", "1"})
    false_values: frozenset[str] | None = None
    severity: Severity = Severity.WARNING
    pulse: bool = False
    _glob: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not re.fullmatch(TOPIC_GLOB_PATTERN, self.topic):
            raise ValueError(f"mapping {self.name!r}: unusable topic glob {self.topic!r}")
        glob = _normalize_glob(self.topic)
        if not glob:
            raise ValueError(f"mapping {self.name!r}: empty topic glob")
        if not re.fullmatch(KIND_PATTERN, self.kind):
            raise ValueError(f"mapping {self.name!r}: unusable event kind {self.kind!r}")
        if not self.items or not all(item.strip() for item in self.items):
            raise ValueError(f"mapping {self.name!r}: needs at least one data item name")
        true_values = frozenset(v.strip().lower() for v in self.true_values)
        if not true_values:
            raise ValueError(f"mapping {self.name!r}: needs at least one true value")
        object.__setattr__(self, "true_values", true_values)
        if self.false_values is not None:
            false_values = frozenset(v.strip().lower() for v in self.false_values)
            if true_values & false_values:
                raise ValueError(
                    f"mapping {self.name!r}: values both true and false: "
                    f"{sorted(true_values & false_values)}"
                )
            object.__setattr__(self, "false_values", false_values)
        object.__setattr__(self, "_glob", glob)

    def matches(self, topic: str) -> bool:
        """True when the (normalized or prefixed) topic matches this mapping's glob."""
        return fnmatch.fnmatchcase(_normalize_glob(topic), self._glob)

    def __call__(self, message: NotificationMessage) -> EventSignal:
        """The signal of one notification on a matching topic."""
        value = message.item(*self.items)
        if value is None:
            raise NotificationRejected(
                f"{message.topic}: mapping {self.name!r} expects item "
                f"{'/'.join(self.items)}, which the notification does not carry"
            )
        lowered = value.strip().lower()
        if lowered in self.true_values:
            state = True
        elif self.false_values is None or lowered in self.false_values:
            state = False
        else:
            raise NotificationRejected(
                f"{message.topic}: mapping {self.name!r} does not know the value {value[:64]!r}"
            )
        return EventSignal(
            self.kind,
            state,
            message,
            self.severity,
            pulse=self.pulse,
            detail={"mapping": self.name},
        )
