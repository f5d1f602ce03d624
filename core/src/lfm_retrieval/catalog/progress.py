"""Progress of a long run: a bar with rate and ETA on a terminal, structured log lines otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from tqdm import tqdm

logger = logging.getLogger("lfm_retrieval.catalog")


class Progress:
    """``advance(n, summary)`` after each record; the summary's counters show in the bar / log."""

    def __init__(self, total: int | None, enabled: bool | None, unit: str, log_every: float = 10.0) -> None:
        self.terminal = sys.stderr.isatty() if enabled is None else enabled
        self.total, self.unit, self.log_every = total, unit, log_every
        self.count = 0
        self.started = self.last_log = time.monotonic()
        self.bar = tqdm(total=total, unit=f" {unit}", dynamic_ncols=True) if self.terminal else None

    def advance(self, n: int, summary: Any) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            if n == 0 or self.count % 64 == 0:
                self.bar.set_postfix(encoded=summary.encoded, unchanged=summary.unchanged, failed=summary.failed)
            return
        now = time.monotonic()
        if now - self.last_log >= self.log_every:
            self.last_log = now
            rate = self.count / max(now - self.started, 1e-9)
            eta = (self.total - self.count) / rate if self.total and rate else None
            line = {"read": self.count, "total": self.total, "rate_per_s": round(rate, 1)}
            line |= {"eta_s": round(eta) if eta is not None else None, "encoded": summary.encoded}
            line |= {"unchanged": summary.unchanged, "failed": summary.failed}
            logger.info("progress %s", json.dumps(line))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
