"""ONVIF's XML namespaces; the hardened parser itself lives in `adapters.safexml`.

The parser's names are re-exported here for code that still imports them from
this module.
"""

from __future__ import annotations

from adapters.safexml import (
    MAX_XML_BYTES,
    XmlRefused,
    parse_duration,
    parse_untrusted_xml,
    parse_xs_datetime,
)

__all__ = [
    "MAX_XML_BYTES",
    "NS",
    "XmlRefused",
    "parse_duration",
    "parse_untrusted_xml",
    "parse_xs_datetime",
]

NS = {
    "env": "http://www.w3.org/2003/05/soap-envelope",
    "soap11": "http://schemas.xmlsoap.org/soap/envelope/",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "tt": "http://www.onvif.org/ver10/schema",
    "tns1": "http://www.onvif.org/ver10/topics",
    "wsd": "http://schemas.xmlsoap.org/ws/2005/04/discovery",
    "wsa2004": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
}
