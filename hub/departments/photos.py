"""Feedback photos: which files are accepted (type named and type found in the bytes)."""

from __future__ import annotations

from hub.departments.errors import DepartmentError

__all__ = ["PHOTO_TYPES", "photo_kind"]

#: Photo types accepted for feedback, each with the bytes its files start with.
PHOTO_TYPES: dict[str, tuple[bytes, ...]] = {
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/webp": (b"RIFF",),
}


def photo_kind(content_type: str, data: bytes, limit: int) -> str:
    """The photo's media type when `data` is a JPEG, PNG or WebP of at most `limit` bytes
    declared as such; else DepartmentError saying why."""
    kind = content_type.split(";")[0].strip().lower()
    signatures = PHOTO_TYPES.get(kind)
    if signatures is None:
        raise DepartmentError(f"photos must be one of {', '.join(PHOTO_TYPES)}, got {kind!r}")
    if not data:
        raise DepartmentError("the photo is empty")
    if len(data) > limit:
        raise DepartmentError(f"the photo is {len(data)} bytes; at most {limit}")
    if not data.startswith(signatures) or (kind == "image/webp" and data[8:12] != b"WEBP"):
        raise DepartmentError(f"the file is not a {kind} image")
    return kind
