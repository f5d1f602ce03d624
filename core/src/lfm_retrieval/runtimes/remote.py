"""The remote runtime: vectors from a server, the sides applied exactly once.

Two kinds of server, told apart by ``GET /info``:

* ``lfm-retrieval serve``: the server applies the model's prompts / prefixes; the client names the
  side (``prompt_name``) on ``POST /embed`` (dense) and ``POST /embed_multivector`` (ColBERT).
* any OpenAI-compatible ``POST /v1/embeddings`` (vLLM, SGLang, llama.cpp's servers, Infinity, TEI's
  OpenAI route): the API has no side, so the CLIENT prepends the model's prompt (``query: `` /
  ``document: `` for LFM2.5-Embedding), once, and L2-normalises what comes back. ``prompts="server"``
  is for a server configured to add the prompt itself.

ColBERT token vectors come from ``serve``'s ``POST /embed_multivector`` (the server applies the
ColBERT rules), llama.cpp's ``llama-server --pooling none`` ``POST /embedding`` or vLLM's
``POST /pooling`` with ``task: "token_embed"``; the last two apply no rule, so the client applies them
to token ids (:class:`RemoteColBERTRuntime`).

Needs httpx (the ``serve`` extra); imports no model library. Token lengths come from the model
folder's ``tokenizer.json`` when there is one (the ``tokenizers`` library), else are estimated.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_retrieval.errors import LFMRetrievalError, ModelLoadError, QueueFull
from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.model_ids import LFM25_EMBEDDING, model_id_of
from lfm_retrieval.vectors import unit_rows

if TYPE_CHECKING:
    from lfm_retrieval.runtimes.colbert_rules import ColBERTRules

logger = logging.getLogger("lfm_retrieval")

#: What the client knows of the published LFM2.5 models without their files (their model cards).
KNOWN_MODELS: dict[str, dict[str, Any]] = {
    "LFM2.5-Embedding-350M": {
        "prompts": {"query": "query: ", "document": "document: "},
        "dimension": 1024,
        "max_length": 512,
    },
    "LFM2.5-ColBERT-350M": {"dimension": 128, "max_length": 512},
}
DEFAULT_MAX_LENGTH = 512
#: The kinds of server a ColBERT model can run on (:class:`RemoteColBERTRuntime`).
COLBERT_APIS = ("auto", "serve", "llama-server", "vllm")


class RemoteError(LFMRetrievalError, ValueError):
    """The server refused a request or answered something unusable; ``status`` is its HTTP status
    (0 when the answer, not the status, was wrong)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class RemoteUnavailableError(LFMRetrievalError, ConnectionError):
    """The server could not be reached (refused, timed out, name not resolved)."""


class Endpoint:
    """One server: a pooled HTTP client whose failures become one-line errors."""

    def __init__(
        self, base_url: str, *, api_key: str | None = None, headers: dict[str, str] | None = None, timeout: float = 60.0
    ) -> None:
        import httpx

        if not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {base_url!r}")
        self.base_url = str(base_url).rstrip("/")
        headers = dict(headers or {})
        if api_key:
            headers.setdefault("Authorization", f"Bearer {api_key}")
        self._http = httpx
        self._client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def request(self, method: str, path: str, body: Any = None, *, quiet: bool = False) -> Any:
        """The JSON answer of ``method path``; ``quiet``: None instead of an error for an HTTP error status."""
        try:
            response = self._client.request(method, path, json=body)
        except self._http.TransportError as exc:
            raise RemoteUnavailableError(
                f"cannot reach the server at {self.base_url}{path}: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 400:
            if quiet:
                return None
            message = _error_message(response)
            if response.status_code == 429:
                raise QueueFull(f"server {self.base_url} is overloaded: {message}")
            raise RemoteError(f"{self.base_url}{path} answered {response.status_code}: {message}", response.status_code)
        try:
            return response.json()
        except ValueError:
            if quiet:
                return None
            raise RemoteError(f"{self.base_url}{path} answered with something other than JSON", 0) from None

    def close(self) -> None:
        self._client.close()


def _error_message(response: Any) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body))
        if isinstance(error, dict):
            error = error.get("message", error)
        return str(error)[:300]
    return str(body)[:300]


def serve_info(endpoint: Endpoint) -> dict[str, Any] | None:
    """``lfm-retrieval serve``'s ``/info`` (None: another kind of server)."""
    info = endpoint.request("GET", "/info", quiet=True)
    if isinstance(info, dict) and isinstance(info.get("models"), dict) and "sides" in info:
        return info
    return None


def served_model(info: dict[str, Any], kind: str, model: str | None, base_url: str) -> dict[str, Any]:
    """The ``kind`` model (``"dense"`` / ``"colbert"``) an lfm-retrieval server serves, checked
    against the ``model`` the caller named (None: whatever it serves)."""
    served = info["models"].get(kind)
    if served is None:
        flag = "--model" if kind == "dense" else "--colbert"
        raise RemoteError(f"the lfm-retrieval server at {base_url} serves no {kind} model (started without {flag})")
    if model is not None and model_id_of(str(model)) != served["model"]:
        raise ModelLoadError(
            f"the lfm-retrieval server at {base_url} serves {served['model']!r}, not {model_id_of(str(model))!r}"
        )
    return served


class RemoteRuntime:
    """What the remote runtimes share: the endpoint, the model's files (when local) and token counts."""

    uses_model_thread = False  # HTTP calls: no OpenMP pool to keep to one thread
    precision = "remote"
    batch_size = 32
    max_batch_tokens = 16384
    max_padding = 1.0  # the server batches as it likes: any lengths may share a request
    model_name: str
    max_length: int
    dimension: int

    def __init__(self, base_url: str, api_key: str | None, headers: dict[str, str] | None, timeout: float) -> None:
        self.endpoint = Endpoint(base_url, api_key=api_key, headers=headers, timeout=timeout)
        self.base_url = self.endpoint.base_url
        self._tokenizer: Any = None

    def _load_tokenizer(self, model: str | None) -> None:
        """The model folder's ``tokenizer.json``, when ``model`` is a local folder that has one."""
        folder = _folder(model)
        if folder is not None and (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def _count(self, texts: list[str]) -> list[int]:
        if self._tokenizer is None:  # no tokenizer here: about 4 characters a token (batching only)
            return [max(1, len(text) // 4) for text in texts]
        return [len(encoding.ids) for encoding in self._tokenizer.encode_batch(texts)]

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.endpoint.close()


class RemoteDenseRuntime(RemoteRuntime):
    """Dense vectors from ``lfm-retrieval serve`` (detected) or any OpenAI-compatible server.

    ``model``: the model's local folder or Hub id (prompts, tokenizer, dimension) and the name
    sent to an OpenAI-compatible server (None: the server's model for ``serve``, else
    LFM2.5-Embedding-350M). ``prompts``: a dict ``{"query": ..., "document": ...}``; ``"client"``
    or None: the model's own (its folder's config, or known for the LFM2.5 ids); ``"server"``:
    the server adds them (the client sends raw text).
    """

    def __init__(
        self,
        model: str | None,
        base_url: str,
        *,
        prompts: dict[str, str] | str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__(base_url, api_key, headers, timeout)
        if isinstance(prompts, str) and prompts not in ("client", "server"):
            raise ValueError(f"prompts must be a dict, 'client' or 'server', not {prompts!r}")
        info = serve_info(self.endpoint)
        self.server = "lfm-retrieval serve" if info is not None else "openai"
        if info is not None:
            self._from_serve(model, info, prompts)
        else:
            self._from_model(model or LFM25_EMBEDDING, prompts)
        self._load_tokenizer(model)
        self.normalize = True

    def _from_serve(self, model: str | None, info: dict[str, Any], prompts: dict[str, str] | str | None) -> None:
        served = served_model(info, "dense", model, self.base_url)
        server_prompts = served.get("prompts") or {}
        if isinstance(prompts, dict) and prompts != server_prompts:
            raise ValueError(
                f"prompts={prompts!r}, but the server at {self.base_url} applies {server_prompts!r} itself"
            )
        self.model_name = str(model) if model is not None else served["path"]
        self.prompts = {side: server_prompts.get(side.value, "") for side in Side}  # applied by the server
        self._client_prompts = dict.fromkeys(Side, "")
        self.dimension = int(served["dimension"])
        self.max_length = int(served.get("max_length") or DEFAULT_MAX_LENGTH)

    def _from_model(self, model: str, prompts: dict[str, str] | str | None) -> None:
        self.model_name = model
        known = _model_facts(model)
        if isinstance(prompts, dict):
            chosen = prompts
        else:
            chosen = known.get("prompts") or {}
            if not chosen:
                logger.warning("%s: no query/document prompts known for this model: encoding without prompts", model)
        missing = [side.value for side in Side if side.value not in chosen]
        if isinstance(prompts, dict) and missing:
            raise ValueError(
                f"prompts={prompts!r} lacks {' / '.join(missing)}; give both sides (an empty string for none)"
            )
        self.prompts = {side: chosen.get(side.value, "") for side in Side}
        self._client_prompts = dict.fromkeys(Side, "") if prompts == "server" else dict(self.prompts)
        self.max_length = int(known.get("max_length") or DEFAULT_MAX_LENGTH)
        probe = self._openai(["dimension probe"], Side.QUERY)[0]  # also: is the server there at all
        expected = known.get("dimension")
        if expected is not None and probe.shape[0] != expected:
            raise RemoteError(
                f"{self.base_url} gives {probe.shape[0]}-d vectors, but {model_id_of(model)} has {expected}: "
                "the server runs another model"
            )
        self.dimension = int(probe.shape[0])

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        full = self._count([self.prompts[side] + text for text in texts])
        return [min(n, self.max_length) for n in full], sum(n > self.max_length for n in full)

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        if self.server == "lfm-retrieval serve":
            rows = self.endpoint.request("POST", "/embed", {"inputs": texts, "prompt_name": side.value})
            return list(self._checked(rows, len(texts)))
        return list(self._openai(texts, side))

    def _openai(self, texts: list[str], side: Side) -> np.ndarray:
        inputs = [self._truncated(self._client_prompts[side] + text) for text in texts]
        body = {"model": self.model_name, "input": inputs, "encoding_format": "float"}
        answer = self.endpoint.request("POST", "/v1/embeddings", body)
        try:
            rows = sorted(answer["data"], key=lambda row: row["index"])
            vectors = [row["embedding"] for row in rows]
        except (KeyError, TypeError) as exc:
            raise RemoteError(
                f"{self.base_url}/v1/embeddings answered without OpenAI's data[].embedding: {exc!r}"
            ) from exc
        return self._checked(vectors, len(texts))

    def _checked(self, rows: Any, count: int) -> np.ndarray:
        try:
            array = np.asarray(rows, dtype=np.float32)
        except ValueError as exc:
            raise RemoteError(f"{self.base_url} answered vectors of different lengths: {exc}") from exc
        if array.ndim != 2 or array.shape[0] != count:
            raise RemoteError(f"{self.base_url} answered {array.shape} for {count} texts: one vector per text expected")
        if getattr(self, "dimension", None) is not None and array.shape[1] != self.dimension:
            raise RemoteError(
                f"{self.base_url} answered {array.shape[1]}-d vectors; this model's have {self.dimension}"
            )
        if not np.isfinite(array).all():
            raise RemoteError(f"{self.base_url} answered vectors with NaN or infinite values")
        return unit_rows(array)

    def _truncated(self, text: str) -> str:
        """``text`` cut after its ``max_length``-th token, as the torch runtime truncates (with the
        model's tokenizer here; without one the server truncates, or refuses, by its own rules)."""
        if self._tokenizer is None:
            return text
        encoding = self._tokenizer.encode(text)
        if len(encoding.ids) <= self.max_length:
            return text
        return text[: encoding.offsets[self.max_length - 1][1]]


class RemoteColBERTRuntime(RemoteRuntime):
    """ColBERT token vectors from a server; ``api`` names its kind (``"auto"``: detected).

    * ``"serve"``: ``lfm-retrieval serve`` (``POST /embed_multivector``; detected by ``GET /info``)
      applies the prefixes, query expansion and skiplist itself.
    * ``"llama-server"``: llama.cpp's ``llama-server --pooling none`` (``POST /embedding`` with
      token ids in, one vector per token out).
    * ``"vllm"``: vLLM's pooling API (``POST /pooling``, ``task: "token_embed"``; detected by
      ``GET /version``), as served for its ColBERT architectures (``ColBERTLfm2Model`` for LFM2).
      Released vLLM tokenises and embeds the input as given, on either side: no ``[Q]`` / ``[D]``
      prefix, no query expansion, no skiplist (vLLM's ``vllm/entrypoints/pooling/pooling/protocol.py``
      takes ``input`` as text or token ids; ``vllm/model_executor/models/colbert.py`` pools ``ALL``
      tokens through the projection).

    For the last two the client applies PyLate's rules to token ids
    (:class:`~lfm_retrieval.runtimes.colbert_rules.ColBERTRules`), once, and so needs the model's
    local folder (its ``tokenizer.json`` and ColBERT settings). As in-process llama.cpp, such a
    server cannot hide the query-expansion tokens from attention (PyLate's
    ``attend_to_expansion_tokens=True``); documents are exact.
    """

    def __init__(
        self,
        model: str | None,
        base_url: str,
        *,
        api: str = "auto",
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        if api not in COLBERT_APIS:
            raise ValueError(f"api must be one of {', '.join(map(repr, COLBERT_APIS))}, not {api!r}")
        super().__init__(base_url, api_key, headers, timeout)
        self._load_tokenizer(model)
        info = serve_info(self.endpoint) if api in ("auto", "serve") else None
        if api == "serve" and info is None:
            raise RemoteError(f"{self.base_url} is not an lfm-retrieval server (no GET /info), but api='serve'")
        if info is not None:
            served = served_model(info, "colbert", model, self.base_url)
            self.server = "lfm-retrieval serve"
            self.model_name = str(model) if model is not None else served["path"]
            self.dimension = int(served["dimension"])
            self.query_length = int(served["query_length"])
            self.document_length = int(served["document_length"])
            self.query_prefix = served.get("query_prefix", "")
            self.document_prefix = served.get("document_prefix", "")
            self.rules = None
        else:
            self.server = api if api != "auto" else self._detected()
            self.model_name = str(model)
            self.rules = self._rules_of(model)
            self.dimension = 0  # probed: one short document (also: is the server there at all)
            probe = self.rules.model_ids(self._ids(["probe"])[0], Side.DOCUMENT)
            self.dimension = int(self._token_vectors([probe])[0].shape[1])
        self.max_length = self.document_length

    def _detected(self) -> str:
        """``"vllm"`` when ``GET /version`` answers vLLM's ``{"version": ...}``, else ``"llama-server"``."""
        version = self.endpoint.request("GET", "/version", quiet=True)
        return "vllm" if isinstance(version, dict) and isinstance(version.get("version"), str) else "llama-server"

    def _rules_of(self, model: str | None) -> ColBERTRules:
        folder = _folder(model)
        if folder is None or self._tokenizer is None:
            raise RemoteError(
                f"{self.base_url} is not an lfm-retrieval server; ColBERT over {self.server} needs the model's "
                "local folder for its tokenizer and ColBERT settings: ColBERTEncoder('path/to/model', base_url=...)"
            )
        from lfm_retrieval.runtimes.colbert_rules import SKIPLIST_WORDS, ColBERTRules

        config = _read_json(folder / "config_sentence_transformers.json")
        tokens = _read_json(folder / "tokenizer_config.json")
        self.query_prefix = config.get("query_prefix", "[Q] ")
        self.document_prefix = config.get("document_prefix", "[D] ")
        self.query_length = int(config.get("query_length", 32))
        self.document_length = int(config.get("document_length", 512))
        expansion = tokens.get("mask_token") or tokens.get("eos_token") or ""  # what PyLate pads queries with
        expansion = expansion.get("content", "") if isinstance(expansion, dict) else expansion
        expansion_id = self._token_id(expansion)
        if expansion_id is None:
            raise ModelLoadError(f"{self.model_name!r} names no mask or EOS token to expand queries with")
        ids = {word: self._tokenizer.token_to_id(word) for word in config.get("skiplist_words", SKIPLIST_WORDS)}
        return ColBERTRules(
            query_prefix_id=self._token_id(self.query_prefix),
            document_prefix_id=self._token_id(self.document_prefix),
            expansion_id=expansion_id,
            skiplist_ids=frozenset(i for i in ids.values() if i is not None),
            query_length=self.query_length,
            document_length=self.document_length,
            do_query_expansion=bool(config.get("do_query_expansion", True)),
        )

    def _token_id(self, token: str) -> int | None:
        if not token:
            return None
        found = self._tokenizer.token_to_id(token)
        if found is None:
            raise ModelLoadError(f"{self.model_name!r}: its tokenizer has no token {token!r}")
        return found

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self._tokenizer.encode_batch(texts)]

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        full = self._count(texts)
        limit = (self.query_length if side is Side.QUERY else self.document_length) - 1  # the prefix token
        truncated = sum(n > limit for n in full)
        if side is Side.QUERY:
            return [self.query_length] * len(texts), truncated
        return [min(n, limit) + 1 for n in full], truncated

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        if self.rules is None:
            rows = self.endpoint.request("POST", "/embed_multivector", {"inputs": texts, "prompt_name": side.value})
            if not isinstance(rows, list) or len(rows) != len(texts):
                raise RemoteError(f"{self.base_url}/embed_multivector answered {len(rows)} rows for {len(texts)} texts")
            return [self._checked(row) for row in rows]
        ids = [self.rules.model_ids(row, side) for row in self._ids(texts)]
        outputs = self._token_vectors(ids)
        return [out[self.rules.kept_rows(row, side)] for row, out in zip(ids, outputs, strict=True)]

    def _token_vectors(self, ids: list[list[int]]) -> list[np.ndarray]:
        """One vector per token of each id list, from llama-server's ``/embedding`` or vLLM's ``/pooling``."""
        if self.server == "vllm":
            path, fix = "/pooling", "serve a ColBERT (token_embed) model with vLLM"
            answer = self.endpoint.request(
                "POST", path, {"input": ids, "task": "token_embed", "encoding_format": "float"}
            )
            try:
                rows = [row["data"] for row in sorted(answer["data"], key=lambda row: row["index"])]
            except (KeyError, TypeError) as exc:
                raise RemoteError(
                    f"{self.base_url}{path} answered without vLLM's data[{{index, data}}]: {exc!r}"
                ) from exc
        else:
            path, fix = "/embedding", "start llama-server with --pooling none"
            answer = self.endpoint.request("POST", path, {"content": ids})
            try:
                rows = [row["embedding"] for row in sorted(answer, key=lambda row: row["index"])]
            except (KeyError, TypeError) as exc:
                raise RemoteError(f"{self.base_url}{path} answered without [{{index, embedding}}]: {exc!r}") from exc
        if len(rows) != len(ids):
            raise RemoteError(f"{self.base_url}{path} answered {len(rows)} rows for {len(ids)} inputs")
        arrays = []
        for row, sent in zip(rows, ids, strict=True):
            if isinstance(row, list) and row and not isinstance(row[0], list):  # one pooled vector
                raise RemoteError(f"{self.base_url}{path} gave one pooled vector, not one per token: {fix}")
            array = self._checked(row)
            if len(array) != len(sent):
                raise RemoteError(f"{self.base_url}{path} gave {len(array)} vectors for {len(sent)} tokens: {fix}")
            arrays.append(array)
        return arrays

    def _checked(self, row: Any) -> np.ndarray:
        try:
            array = np.asarray(row, dtype=np.float32)
        except ValueError as exc:
            raise RemoteError(f"{self.base_url} answered token vectors of different lengths: {exc}") from exc
        if array.ndim != 2 or (self.dimension and array.shape[1] != self.dimension):
            raise RemoteError(
                f"{self.base_url} answered token vectors of shape {array.shape}; expected (n, {self.dimension})"
            )
        if not np.isfinite(array).all():
            raise RemoteError(f"{self.base_url} answered vectors with NaN or infinite values")
        return unit_rows(array)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _folder(model: str | None) -> Path | None:
    if model is None:
        return None
    folder = Path(str(model)).expanduser()
    return folder if folder.is_dir() else None


def _model_facts(model: str) -> dict[str, Any]:
    """Prompts and max length from a local sentence-transformers folder, else what is known of the
    LFM2.5 ids (:data:`KNOWN_MODELS`), else nothing."""
    folder = _folder(model)
    if folder is None:
        return dict(KNOWN_MODELS.get(model_id_of(model), {}))
    facts: dict[str, Any] = {}
    config = folder / "config_sentence_transformers.json"
    if config.is_file():
        facts["prompts"] = {
            k: v for k, v in (json.loads(config.read_text()).get("prompts") or {}).items() if k in ("query", "document")
        }
    bert = folder / "sentence_bert_config.json"
    if bert.is_file():
        facts["max_length"] = json.loads(bert.read_text()).get("max_seq_length")
    return facts
