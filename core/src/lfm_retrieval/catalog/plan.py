"""What an engine runs: a job's plan (encoders, targets, preparer, options), the engine protocol,
and the finish every engine shares (sync deletes after a complete read)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Literal, Protocol

from lfm_retrieval.catalog.prepare import AnyEncoder, Preparer
from lfm_retrieval.catalog.sources import Source
from lfm_retrieval.catalog.summary import Summary
from lfm_retrieval.catalog.targets import Target

OnError = Literal["skip", "fail"]


@dataclass(frozen=True)
class Plan:
    """A checked job, as engines see it: its encoders, its targets, how rows become records, and its options."""

    encoders: list[AnyEncoder]
    targets: list[Target]
    preparer: Preparer
    sync: bool = False
    on_error: OnError = "skip"
    batch_size: int = 256
    progress: bool | None = None


class Engine(Protocol):
    """Where a job runs: :class:`~lfm_retrieval.catalog.engines.LocalEngine` or ``RayEngine``."""

    def run(self, plan: Plan, source: Source) -> Summary: ...


def delete_unread(plan: Plan, read: Container[str]) -> int:
    """Sync mode's finish: delete from every target the records whose key the complete read did not see.

    Returns how many keys left the catalog (a key stored in two targets counts once)."""
    gone: set[str] = set()
    for target in plan.targets:
        leaving = [key for key in target.store.fingerprints() if key not in read]
        target.store.delete(leaving)
        gone.update(leaving)
    return len(gone)
