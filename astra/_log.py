"""Process logging for AstraRay's commands: one stderr handler, one format."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str) -> None:
    """Send every log record at ``level`` or above to stderr, replacing other handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # grpc.aio logs every call's event loop lookup at DEBUG: noise even when debugging.
    logging.getLogger("grpc").setLevel(max(root.level, logging.INFO))
