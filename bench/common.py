"""Shared helpers for benchmark scripts: machine facts and result files.

A result file is exactly what one run of its script wrote: the script's measurements plus ``benchmark``,
``measured_at``, ``machine``, ``command`` (the command line that wrote it) and ``load_average_1_5_15``. Never edit
one by hand; rerun the command. ``CDP_BENCH_RESULTS`` points a smoke run at another folder.

Example:
    >>> from bench.common import write_result
    >>> write_result("lake", {"ratio": 0.95}, argv=["--rows", "1000"])   # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

RESULTS = Path(__file__).resolve().parent / "results"


def results_dir() -> Path:
    """``bench/results``, or the folder named by ``CDP_BENCH_RESULTS`` (smoke runs that must not replace results)."""
    return Path(os.environ["CDP_BENCH_RESULTS"]) if os.environ.get("CDP_BENCH_RESULTS") else RESULTS


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


def write_result(name: str, payload: dict[str, object], *, argv: Sequence[str] | None = None) -> Path:
    """Write ``bench/results/<name>.json`` with the machine facts and the command line, and print it.

    ``argv`` are the script's arguments (default: this process's), recorded as ``python -m bench.<name> ...``.
    """
    folder = results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    args = list(sys.argv[1:] if argv is None else argv)
    doc = {"benchmark": name, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), "command": shlex.join(["python", "-m", f"bench.{name}", *args]), **payload}
    # Other work on the machine slows a benchmark down; the load average at the end says how quiet it was.
    doc["load_average_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    text = json.dumps(strict_json(doc), indent=2, default=str, allow_nan=False)
    path = folder / f"{name}.json"
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
