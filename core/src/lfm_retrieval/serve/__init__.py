"""``lfm-retrieval serve``: an HTTP server for the dense and ColBERT models with explicit sides.

Needs the ``serve`` extra (FastAPI, uvicorn, prometheus-client); nothing else in the core
imports this package.
"""

from __future__ import annotations

from lfm_retrieval.serve.app import Limits, create_app

__all__ = ["Limits", "create_app", "run"]


def run(app: object, host: str = "127.0.0.1", port: int = 8080, *, graceful_timeout_s: float | None = 60) -> None:
    """Serve ``app`` with uvicorn until SIGINT/SIGTERM; in-flight requests finish first
    (for up to ``graceful_timeout_s``), then queued queries, then the process exits."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=graceful_timeout_s,
        log_level="info",
        access_log=False,
    )
