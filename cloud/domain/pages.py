"""Opaque pagination tokens: the client hands back what we gave it, and we can tell if it was tampered with."""

from __future__ import annotations

import base64
import json


class BadToken(ValueError):
    pass


def encode(state: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(token: str) -> dict:
    try:
        pad = "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(token + pad))
    except (ValueError, TypeError):
        raise BadToken("'next' is not a token this API issued") from None
    if not isinstance(state, dict):
        raise BadToken("'next' is not a token this API issued")
    return state
