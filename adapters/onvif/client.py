"""The ONVIF adapter's I/O: one module per concern, re-exported here.

- `http`: `CameraHttp`, the one hardened HTTP client for every camera request
  (pinned host, capped answers, total deadlines, no decompression, no
  redirects, TLS verified by default);
- `probe`: identity, services, profiles and media addresses through zeep on
  the hardened transport;
- `events`: PullPoint event channels, one per camera, with channel health;
- `discovery`: WS-Discovery;
- `errors`: failures classified for the operator.

Import it explicitly (`from adapters.onvif.client import probe`): it loads
zeep, which the pure parsing modules do not need.
"""

from __future__ import annotations

from adapters.onvif.discovery import discover
from adapters.onvif.errors import ProbeError, classify_error
from adapters.onvif.events import (
    EventChannelManager,
    EventChannelSettings,
    EventSubmitError,
    EventSubscription,
)
from adapters.onvif.http import (
    DEFAULT_TIMEOUT,
    Answer,
    CameraHttp,
    CameraRequestError,
    ResponseTooLarge,
    tls_context,
)
from adapters.onvif.probe import Prober, probe

__all__ = [
    "DEFAULT_TIMEOUT",
    "Answer",
    "CameraHttp",
    "CameraRequestError",
    "EventChannelManager",
    "EventChannelSettings",
    "EventSubmitError",
    "EventSubscription",
    "ProbeError",
    "Prober",
    "ResponseTooLarge",
    "classify_error",
    "discover",
    "probe",
    "tls_context",
]
