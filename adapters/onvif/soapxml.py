"""Reading SOAP documents from cameras by local element names (pure, no I/O).

A camera's choice of namespace prefix (or an older namespace URI for the same
element) does not matter: elements are matched on their local names. Faults a
camera answers with are read here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adapters.safexml import XmlRefused, parse_untrusted_xml

__all__ = [
    "SoapFault",
    "body_of",
    "checked_body",
    "first",
    "local_name",
    "parse_soap_fault",
    "text_of",
]


def local_name(element: Any) -> str:
    """An element's name without its namespace ("" for comments and processing instructions)."""
    tag = element.tag
    if not isinstance(tag, str):  # comments / processing instructions
        return ""
    # lxml tags are "{namespace}name" or "name".
    return tag.rpartition("}")[2]


def first(element: Any, *path: str) -> Any | None:
    """The first child named `path[0]` (any namespace), then its child `path[1]`, ..."""
    current = element
    for name in path:
        # A plain walk over the children: SOAP elements have few, and lxml's
        # `find("{*}name")` compiles an ElementPath expression on every call.
        suffix = "}" + name
        for child in current:
            tag = child.tag
            if isinstance(tag, str) and (tag == name or tag.endswith(suffix)):
                current = child
                break
        else:
            return None
    return current


def text_of(element: Any | None) -> str | None:
    if element is None or element.text is None:
        return None
    value = str(element.text).strip()
    return value or None


def body_of(root: Any) -> Any:
    if local_name(root) != "Envelope":
        raise XmlRefused(f"not a SOAP envelope (root element {local_name(root)!r})")
    body = first(root, "Body")
    if body is None:
        raise XmlRefused("SOAP envelope without a Body")
    return body


@dataclass(frozen=True, slots=True)
class SoapFault(Exception):
    """A SOAP fault a camera answered with."""

    code: str
    subcodes: tuple[str, ...] = ()
    reason: str = ""

    def __str__(self) -> str:
        sub = f" ({', '.join(self.subcodes)})" if self.subcodes else ""
        return f"SOAP fault {self.code}{sub}: {self.reason or 'no reason given'}"

    @property
    def is_auth_failure(self) -> bool:
        """True when the fault says the credentials were not accepted."""
        names = (self.code, *self.subcodes)
        if any(n.split(":")[-1] in ("NotAuthorized", "FailedAuthentication") for n in names):
            return True
        reason = self.reason.lower()
        return "not authorized" in reason or "authentication" in reason

    @property
    def is_unknown_subscription(self) -> bool:
        """True when the camera no longer knows the subscription (expired / deleted)."""
        text = " ".join((self.code, *self.subcodes, self.reason)).lower()
        return any(
            marker in text
            for marker in (
                "resourceunknown",
                "unknown subscription",
                "invalidsubscription",
                "no such subscription",
                "expired",
            )
        )


def _fault_from_body(body: Any) -> SoapFault | None:
    fault = first(body, "Fault")
    if fault is None:
        return None
    code = first(fault, "Code")
    if code is not None:  # SOAP 1.2
        value = text_of(first(code, "Value")) or "env:Receiver"
        subcodes: list[str] = []
        sub = first(code, "Subcode")
        while sub is not None and len(subcodes) < 8:
            sub_value = text_of(first(sub, "Value"))
            if sub_value:
                subcodes.append(sub_value)
            sub = first(sub, "Subcode")
        reason_el = first(fault, "Reason")
        reason = text_of(first(reason_el, "Text")) if reason_el is not None else None
        return SoapFault(value, tuple(subcodes), (reason or "")[:500])
    # SOAP 1.1
    return SoapFault(
        text_of(first(fault, "faultcode")) or "Server",
        (),
        (text_of(first(fault, "faultstring")) or "")[:500],
    )


def parse_soap_fault(data: bytes) -> SoapFault | None:
    """The fault in a SOAP answer, or None if it is not a fault."""
    return _fault_from_body(body_of(parse_untrusted_xml(data)))


def checked_body(data: bytes) -> Any:
    body = body_of(parse_untrusted_xml(data))
    fault = _fault_from_body(body)
    if fault is not None:
        raise fault
    return body
