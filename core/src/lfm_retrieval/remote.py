"""A client of ``lfm-retrieval serve``: vectors from the server, always on an explicit side.

Used by the LangChain and LlamaIndex classes when given ``base_url``; needs httpx (the
``serve`` extra), never FastAPI.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

import numpy as np

from lfm_retrieval.encoders.batching import Side, check_text
from lfm_retrieval.encoders.microbatch import QueueFull
from lfm_retrieval.errors import InvalidTextError, LFMRetrievalError


class RemoteError(LFMRetrievalError, ValueError):
    """The server refused a request; the message is the server's, ``status`` its HTTP status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerClient:
    """Dense vectors from a running ``lfm-retrieval serve`` (``POST /embed`` with ``prompt_name``).

    >>> client = ServerClient("http://127.0.0.1:8080")  # doctest: +SKIP
    >>> client.embed(["trail shoes"], Side.QUERY).shape  # doctest: +SKIP
    (1, 1024)
    """

    def __init__(self, base_url: str, *, timeout: float = 60.0, headers: dict[str, str] | None = None) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = dict(headers or {})
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=self.headers)
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def embed(self, texts: list[str], side: Side | str) -> np.ndarray:
        """One float32 vector per text, encoded by the server on ``side``."""
        if not texts:
            return np.zeros((0, 0), np.float32)
        return _vectors(self._client.post("/embed", json=_body(texts, side)))

    async def aembed(self, texts: list[str], side: Side | str) -> np.ndarray:
        """:meth:`embed` without blocking the event loop."""
        if not texts:
            return np.zeros((0, 0), np.float32)
        return _vectors(await self._async_client().post("/embed", json=_body(texts, side)))

    def info(self) -> dict[str, Any]:
        """The server's ``/info``: models, dimensions, stores, limits."""
        return _json(self._client.get("/info"))

    def _async_client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:  # an httpx.AsyncClient belongs to the loop that first used it
            client = self._async[loop] = httpx.AsyncClient(
                base_url=self.base_url, timeout=self.timeout, headers=self.headers
            )
        return client

    def close(self) -> None:
        """Close the sync connection pool (async pools close with their event loop)."""
        self._client.close()


def _body(texts: list[str], side: Side | str) -> dict[str, Any]:
    if isinstance(texts, str):
        raise InvalidTextError("texts is a single string; pass a list of strings (e.g. [text])")
    return {"inputs": [check_text(text, i) for i, text in enumerate(texts)], "prompt_name": Side(side).value}


def _json(response: Any) -> Any:
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        if response.status_code == 429:
            raise QueueFull(f"server {response.request.url.host} is overloaded: {message}")
        raise RemoteError(f"{response.request.url} answered {response.status_code}: {message}", response.status_code)
    return response.json()


def _vectors(response: Any) -> np.ndarray:
    return np.asarray(_json(response), dtype=np.float32)
