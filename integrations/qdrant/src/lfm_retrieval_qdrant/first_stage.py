"""A MUVERA first stage for Qdrant multivector collections: a dense candidate vector beside the MaxSim one.

Exact MaxSim scores every stored record. With a first stage, each record also holds the
MUVERA fixed-dimensional encoding of its token vectors (arXiv 2405.19504: the dot product of
two encodings approximates MaxSim) in a named dense vector with an HNSW index, and a search
is one query: the ``prefetch`` records nearest to the query's encoding, reordered by exact
MaxSim over their token vectors (the filter applies to both stages).

Layout: a collection with a first stage has the named vectors ``"colbert"`` (the MaxSim
multivector, HNSW off) and ``"muvera"`` (dot product, HNSW); one without keeps the unnamed
multivector it always had. The MUVERA settings are recorded with the collection's spec
(``"first_stage": {"kind": "muvera", "muvera": {...}}``), so reopening it rebuilds the same
encoding; reopening a collection made without a first stage keeps searching it exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.muvera import DEFAULT_PREFETCH
from lfm_retrieval.stores import CollectionSpec
from lfm_retrieval_qdrant.layout import MUVERA_VECTOR

if TYPE_CHECKING:
    from lfm_retrieval.muvera import Muvera

#: What ``first_stage=`` accepts: a MUVERA first stage, or none (exact MaxSim over every record).
FIRST_STAGES = ("muvera", "none")
#: MUVERA settings a store accepts as ``muvera_<name>=`` (the rest keep the encoding's defaults).
MUVERA_SETTINGS = ("k_sim", "dim_proj", "r_reps", "seed")


@dataclass(frozen=True)
class FirstStageOptions:
    """What a store was opened with: ``first_stage`` (None: the mode's default for a new
    collection, whatever an existing one has), ``prefetch``, and the MUVERA settings given."""

    first_stage: str | None = None
    prefetch: int = DEFAULT_PREFETCH
    muvera: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.first_stage is not None and self.first_stage not in FIRST_STAGES:
            raise ValueError(f"first_stage must be one of {FIRST_STAGES} (or None), not {self.first_stage!r}")
        if not isinstance(self.prefetch, int) or isinstance(self.prefetch, bool) or self.prefetch < 1:
            raise ValueError(f"prefetch must be a positive int, not {self.prefetch!r}")
        for name, value in self.muvera.items():
            if name not in MUVERA_SETTINGS:
                raise ValueError(f"unknown MUVERA setting {name!r} (known: {', '.join(MUVERA_SETTINGS)})")
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                raise ValueError(f"muvera_{name} must be a {'non-negative' if name == 'seed' else 'positive'} int")
        if self.first_stage == "none" and self.muvera:
            raise ValueError("MUVERA settings were given with first_stage='none'")

    @classmethod
    def of(
        cls,
        first_stage: str | bool | None,
        prefetch: int | None,
        k_sim: int | None,
        dim_proj: int | None,
        r_reps: int | None,
        seed: int | None,
    ) -> FirstStageOptions:
        """The options from a store's keyword arguments (``True``/``False`` mean "muvera"/"none")."""
        if isinstance(first_stage, bool):
            first_stage = "muvera" if first_stage else "none"
        given = {"k_sim": k_sim, "dim_proj": dim_proj, "r_reps": r_reps, "seed": seed}
        return cls(
            first_stage,
            DEFAULT_PREFETCH if prefetch is None else prefetch,
            {name: value for name, value in given.items() if value is not None},
        )


class FirstStage:
    """A collection's MUVERA first stage: encodes documents and queries, says how many to prefetch."""

    def __init__(self, muvera: Muvera, prefetch: int, token_spec: CollectionSpec) -> None:
        self.muvera = muvera
        self.prefetch = prefetch
        #: Cosine token vectors are encoded as Qdrant scores them: each row at unit length.
        self.unit_rows = token_spec.distance == "cosine"
        vector_type = token_spec.vector_type
        #: The spec of the ``"muvera"`` vector (dot product; float16 in a float16 collection).
        self.spec = CollectionSpec(muvera.embedding_size, "dot", vector_type)  # type: ignore[arg-type]

    def metadata(self) -> dict[str, Any]:
        """What the collection records: enough to rebuild the same encoding."""
        return {"kind": "muvera", "muvera": dict(self.muvera.config())}

    def describe(self) -> dict[str, Any]:
        """The stage as a store reports it (``store.first_stage``)."""
        return {**self.metadata(), "prefetch": self.prefetch, "vector": MUVERA_VECTOR, "size": self.spec.dimension}

    def limit(self, k: int) -> int:
        return max(self.prefetch, k)

    def document_vectors(self, matrices: Sequence[np.ndarray]) -> np.ndarray:
        """One encoding per record, as stored (float16-rounded in a float16 collection)."""
        encodings = self.muvera.encode_documents([self._rows(matrix) for matrix in matrices])
        return _as_stored(encodings, self.spec.vector_type)

    def query_vector(self, token_vectors: np.ndarray) -> list[float]:
        encoding = self.muvera.encode_queries([self._rows(token_vectors)])
        return _as_stored(encoding, self.spec.vector_type)[0].tolist()

    def _rows(self, matrix: np.ndarray) -> np.ndarray:
        if not self.unit_rows:
            return matrix
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix / np.where(norms > 0, norms, 1)  # an all-zero row stays zero (Qdrant scores it 0)


def _as_stored(vectors: np.ndarray, vector_type: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors.astype(np.float16).astype(np.float32) if vector_type == "float16" else vectors


def for_new_collection(options: FirstStageOptions, spec: CollectionSpec, *, default_on: bool) -> FirstStage | None:
    """The first stage a new collection gets: the one asked for, else the mode's default."""
    wanted = options.first_stage or ("muvera" if default_on or options.muvera else "none")
    if wanted == "none":
        return None
    from lfm_retrieval.muvera import DEFAULT_DIM_PROJ, Muvera  # its encoder library only where one is used

    settings = {"dim_proj": min(DEFAULT_DIM_PROJ, spec.dimension), **options.muvera}  # narrow tokens: no wider
    try:
        muvera = Muvera(spec.dimension, **settings)
    except ValueError as error:
        raise ValueError(f"MUVERA settings {options.muvera or '(defaults)'}: {error}") from error
    return FirstStage(muvera, options.prefetch, spec)


def for_existing_collection(
    options: FirstStageOptions,
    spec: CollectionSpec,
    *,
    vector_size: int | None,
    recorded: Mapping[str, Any] | None,
    where: str,
) -> FirstStage | None:
    """The first stage an existing collection has, checked against what the store was opened with.

    ``vector_size``: the size of its ``"muvera"`` vector (None: it has none); ``recorded``:
    the first stage its spec records. A store asking for something else is a
    CollectionMismatchError naming the difference, before anything is written.
    """
    if vector_size is None:
        if recorded:
            raise CollectionMismatchError(f"{where} records a first stage {dict(recorded)} but has no MUVERA vector")
        if options.first_stage == "muvera" or options.muvera:
            raise CollectionMismatchError(
                f"{where} was made without a first stage (searched by exact MaxSim over every record), but "
                f"first_stage='muvera' or MUVERA settings were asked for; open it without them, or copy it to a "
                "new collection that has one (lfm-retrieval copy); nothing was written"
            )
        return None
    if not recorded or recorded.get("kind") != "muvera" or not isinstance(recorded.get("muvera"), Mapping):
        raise CollectionMismatchError(
            f"{where} has a {MUVERA_VECTOR!r} vector but records no MUVERA settings (made by another tool); "
            "nothing was written"
        )
    if options.first_stage == "none":
        raise CollectionMismatchError(
            f"{where} has a MUVERA first stage, but first_stage='none' was asked for; open it without "
            "first_stage (or copy it to a collection without one); nothing was written"
        )
    config = dict(recorded["muvera"])
    diffs = [
        f"muvera_{name}: stored {config.get(name)!r}, asked {value!r}"
        for name, value in options.muvera.items()
        if config.get(name) != value
    ]
    if diffs:
        raise CollectionMismatchError(
            f"{where} already exists with other MUVERA settings ({'; '.join(diffs)}); nothing was written"
        )
    from lfm_retrieval.muvera import Muvera

    muvera = Muvera.from_config(config)
    if muvera.embedding_size != vector_size:
        raise CollectionMismatchError(
            f"{where}: its {MUVERA_VECTOR!r} vector has {vector_size} dimensions, but the recorded MUVERA "
            f"settings {config} encode {muvera.embedding_size}; nothing was written"
        )
    return FirstStage(muvera, options.prefetch, spec)


#: Whether a new collection gets a first stage when ``first_stage`` is not given, per mode
#: (measured in benchmarks/multivector/first_stage.py; see docs/stores/qdrant-first-stage.md).
FIRST_STAGE_DEFAULT = {"edge": True, "local": True, "server": True}
_UNRESOLVED: Any = object()


class FirstStageMixin:
    """The first-stage options of a multivector store (every mode) and its stage, resolved once.

    A store mixes this in before its collection class and supplies ``_default_first_stage()``
    (the mode's default) and ``_stored_first_stage()`` (what an existing collection has:
    ``(size of its "muvera" vector or None, recorded first stage or None)``, None if absent).
    """

    uri: str

    def __init__(
        self,
        target: Any,
        *,
        first_stage: str | bool | None = None,
        prefetch: int | None = None,
        muvera_k_sim: int | None = None,
        muvera_dim_proj: int | None = None,
        muvera_r_reps: int | None = None,
        muvera_seed: int | None = None,
        **options: Any,
    ) -> None:
        self._stage_options = FirstStageOptions.of(
            first_stage, prefetch, muvera_k_sim, muvera_dim_proj, muvera_r_reps, muvera_seed
        )
        self._stage: FirstStage | None = _UNRESOLVED
        super().__init__(target, **options)  # type: ignore[call-arg]

    @property
    def first_stage(self) -> dict[str, Any] | None:
        """The collection's first stage (kind, MUVERA settings, prefetch, vector size), or None."""
        stage = self._first_stage()
        return None if stage is None else stage.describe()

    def ensure_collection(self, spec: Any) -> None:
        """Create the collection (with the first stage asked for, or the mode's default) or check it,
        first stage included."""
        super().ensure_collection(spec)  # type: ignore[misc]
        self._stage = _UNRESOLVED
        self._first_stage()

    def _default_first_stage(self) -> bool:
        raise NotImplementedError

    def _stored_first_stage(self) -> tuple[int | None, dict[str, Any] | None] | None:
        raise NotImplementedError

    def _new_first_stage(self, spec: CollectionSpec) -> FirstStage | None:
        return for_new_collection(self._stage_options, spec, default_on=self._default_first_stage())

    def _first_stage(self) -> FirstStage | None:
        if self._stage is _UNRESOLVED:
            spec = self._require_spec()  # type: ignore[attr-defined]
            stored = self._stored_first_stage()
            if stored is None:
                raise LookupError(f"collection {self.uri!r} does not exist; call ensure_collection(spec) first")
            size, recorded = stored
            self._stage = for_existing_collection(
                self._stage_options, spec, vector_size=size, recorded=recorded, where=f"collection {self.uri!r}"
            )
        return self._stage
