"""What a catalog run did."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Summary:
    """Counters of one run, and the bad records with their positions."""

    read: int = 0
    unchanged: int = 0
    encoded: int = 0
    written: int = 0
    payload_updated: int = 0
    deleted: int = 0
    truncated: int = 0
    failed: int = 0
    seconds: float = 0.0
    bad_records: list[tuple[str, str]] = field(default_factory=list)

    def add(self, other: Summary) -> None:
        """Add another part's counters and bad records (seconds are the caller's)."""
        for name in ("read", "unchanged", "encoded", "written", "payload_updated", "deleted", "truncated", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.bad_records.extend(other.bad_records)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "bad_records"} | {
            "bad_records": [{"position": p, "problem": m} for p, m in self.bad_records[:100]]
        }


def position_order(position: str) -> tuple[Any, ...]:
    """Sort key of ``file:line`` / ``file#index`` / ``#index`` positions in reading order."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", position))
