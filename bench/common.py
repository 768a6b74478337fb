"""Shared helpers for benchmark scripts: machine facts and result files.

Example:
    >>> from bench.common import write_result
    >>> write_result("lake", {"ratio": 0.95})   # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict[str, object]:
    """Cores, memory and software versions, so a result can be read against its machine."""
    mem_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    import pyspark

    return {
        "cores": os.cpu_count(),
        "memory_gb": round(mem_bytes / 2**30, 1),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "platform": platform.platform(),
    }


def write_result(name: str, payload: dict[str, object]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine facts and print it."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), **payload}
    # Other work on the machine slows a benchmark down; the load average at the end says how quiet it was.
    doc.setdefault("load_average_1_5_15", [round(x, 2) for x in os.getloadavg()])
    text = json.dumps(strict_json(doc), indent=2, default=str, allow_nan=False)
    path = RESULTS / f"{name}.json"
    path.write_text(text + "\n")
    print(text)
    return path


def strict_json(value: object) -> object:
    """``value`` with NaN and infinities as null: Python writes them as bare tokens that other JSON readers refuse.

    Example:
        >>> strict_json({"mae": float("nan"), "n": [1.5]})
        {'mae': None, 'n': [1.5]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


class Timer:
    """Context manager measuring wall seconds: ``with Timer() as t: ...; t.seconds``."""

    def __enter__(self) -> "Timer":
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
