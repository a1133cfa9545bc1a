"""Timing helpers shared by the benchmarks: interleaved rounds, medians, a JSON report."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def ops_per_second(
    contenders: dict[str, Callable[[], object]], *, rounds: int = 9, seconds_per_round: float = 0.4
) -> dict[str, dict[str, Any]]:
    """Run each contender for about ``seconds_per_round``, round after round, interleaved, and
    report the median, min and max rate in operations per second."""
    batch: dict[str, int] = {}
    for name, fn in contenders.items():
        # Calibrate a batch size that takes ~1/10 of a round.
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds_per_round / 10:
            fn()
            n += 1
        batch[name] = max(n, 1)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            done, start = 0, time.perf_counter()
            while True:
                for _ in range(batch[name]):
                    fn()
                done += batch[name]
                elapsed = time.perf_counter() - start
                if elapsed >= seconds_per_round:
                    break
            samples[name].append(done / elapsed)
    return {
        name: {
            "median_ops_per_s": round(statistics.median(values), 1),
            "min_ops_per_s": round(min(values), 1),
            "max_ops_per_s": round(max(values), 1),
            "rounds": len(values),
        }
        for name, values in samples.items()
    }


def write_report(name: str, report: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        **report,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
