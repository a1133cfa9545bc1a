"""How ``civic-verifier serve`` runs uvicorn: its HTTP protocol and its logging.

:data:`PROTOCOL` names :class:`civic_service.http.CoalescingHTTPProtocol` (shared with the
issuer): uvicorn's own protocol with ``TCP_NODELAY`` on every connection (without it every
response of a multi-worker verifier waited 40 ms for a delayed ACK) and each answer in one
``send``.

:data:`LOG_CONFIG` is uvicorn's logging config plus the ``civic.verifier`` loggers at INFO on
stderr: uvicorn configures only its own loggers, so the audit line of every verdict (reason
codes and identifiers, never a claim value) was dropped under ``civic-verifier serve``.
"""

from __future__ import annotations

import copy
from typing import Any

from uvicorn.config import LOGGING_CONFIG

PROTOCOL = "civic_service.http:CoalescingHTTPProtocol"
"""What to give uvicorn as ``http``: an import string, so that each worker imports it."""

LOG_CONFIG: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
"""What to give uvicorn as ``log_config`` (each worker process applies it)."""
LOG_CONFIG["loggers"]["civic.verifier"] = {
    "handlers": ["default"],
    "level": "INFO",
    "propagate": False,
}
