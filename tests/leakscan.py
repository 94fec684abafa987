"""Find Secret values in text: raw, and in the base64 forms a Secret's data (or a careless dump) carries."""

from __future__ import annotations

import base64
from collections.abc import Iterable


def encodings(value: str) -> dict[str, str]:
    """The forms a value may take when it leaks: as is, standard and URL-safe base64 (padded or not)."""
    raw = value.encode()
    std = base64.b64encode(raw).decode()
    url = base64.urlsafe_b64encode(raw).decode()
    return {"raw": value, "base64": std, "base64-unpadded": std.rstrip("="), "base64url": url.rstrip("=")}


def leaks(text: str, values: Iterable[str]) -> list[str]:
    """One line per (value, form) found in text; empty when nothing leaked."""
    found = []
    for value in values:
        for form, needle in encodings(value).items():
            if needle in text:
                found.append(f"{value[:6]}... as {form} at offset {text.index(needle)}")
    return found
