"""Hardened parsing of XML that comes from devices (untrusted input).

A shared helper module, not an adapter: every protocol package that reads XML
from a device (ONVIF SOAP, GB/T 28181 MANSCDP bodies, ...) parses it here.
Every document a device sends goes through `parse_untrusted_xml`: no DTD is
loaded, no entity is resolved, nothing is fetched from the network, libxml2's
huge-tree limits stay on, and any document type declaration is refused
outright, so a billion-laughs or external-entity body fails with a clear
`XmlRefused` instead of eating memory or reaching another host.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree

__all__ = [
    "MAX_XML_BYTES",
    "XmlRefused",
    "parse_duration",
    "parse_untrusted_xml",
    "parse_xs_datetime",
]

#: Largest XML document accepted from a device (a PullMessages answer is a few KiB).
MAX_XML_BYTES = 10 * 1024 * 1024

# A DOCTYPE may hide behind an XML declaration, comments or a BOM; in any
# encoding lxml accepts, the ASCII-compatible ones are what cameras use. UTF-16
# documents are decoded first so the scan cannot be sidestepped that way.
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_ENTITY = re.compile(rb"<!\s*ENTITY", re.IGNORECASE)


class XmlRefused(ValueError):
    """A device's XML was refused: hostile, oversized or not well-formed."""


_PARSERS = threading.local()


def _parser() -> Any:
    # One parser per thread, reused: lxml parsers are not safe to share across
    # threads, and building one costs more than parsing a PullMessages answer.
    parser = getattr(_PARSERS, "parser", None)
    if parser is None:
        parser = _PARSERS.parser = _new_parser()
    return parser


def _new_parser() -> Any:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
        recover=False,
    )


def _scan_bytes(data: bytes) -> bytes:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16").encode("utf-8", "replace")
        except UnicodeDecodeError as exc:
            raise XmlRefused("undecodable UTF-16 document") from exc
    return data


def parse_untrusted_xml(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> Any:
    """Parse a device's XML document safely and return its root element."""
    if len(data) > max_bytes:
        raise XmlRefused(f"document of {len(data)} bytes exceeds the {max_bytes} byte cap")
    if not data.strip():
        raise XmlRefused("empty document")
    scanned = _scan_bytes(data)
    if _DOCTYPE.search(scanned) or _ENTITY.search(scanned):
        raise XmlRefused("document type declarations and entities are refused")
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlRefused(f"malformed XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    # Belt and braces: the byte scan above should have caught any DTD already.
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise XmlRefused("document type declarations are refused")
    return root


_BEYOND_MICROSECONDS = re.compile(r"(\.\d{6})\d+")


def parse_xs_datetime(text: str | None) -> datetime | None:
    """Parse an xs:dateTime into aware UTC; None when absent or unreadable."""
    if not text:
        return None
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Python accepts at most microseconds; some cameras send nanoseconds.
    if "." in value:
        value = _BEYOND_MICROSECONDS.sub(r"\1", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        # ONVIF says UTC; a camera that omits the zone still means UTC.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_DURATION = re.compile(
    r"P(?:(?P<days>\d+)D)?(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(text: str) -> timedelta:
    """Parse a simple xs:duration such as `PT60S` or `PT1M30S` (no years/months)."""
    match = _DURATION.fullmatch(text.strip())
    if not match or text.strip() in ("P", "PT"):
        raise ValueError(f"unsupported duration {text!r}")
    parts = {name: float(value) for name, value in match.groupdict().items() if value}
    return timedelta(
        days=parts.get("days", 0.0),
        hours=parts.get("hours", 0.0),
        minutes=parts.get("minutes", 0.0),
        seconds=parts.get("seconds", 0.0),
    )
