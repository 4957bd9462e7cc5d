"""Reading a modal's `private_metadata`: ours, but carried by a request we did not build."""

from __future__ import annotations

import json
import logging
from typing import Any

log = logging.getLogger(__name__)


def metadata(view: dict[str, Any], *required: str) -> dict[str, Any] | None:
    """The metadata as a dict with each `required` key a string, or None (logged, never raised)."""
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except (ValueError, TypeError):
        meta = None
    if not isinstance(meta, dict) or any(not isinstance(meta.get(k), str) for k in required):
        log.warning("a modal (%s) arrived with unreadable private_metadata", view.get("callback_id"))
        return None
    return meta
