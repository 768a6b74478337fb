"""Profile API load test on loopback: a fixed request rate against N profiles; p50/p99 latency, errors, CPU.

The store is built with N synthetic profiles (documents shaped like the profile view: identifiers, 6 traits,
20 attributes, consent, scores, audiences), the real server runs as `cdp api serve` does (uvicorn, `--workers`
processes, the real audit log into the bench lake), and an open-loop generator sends requests on a fixed
schedule: latency is measured from each request's *scheduled* time, so a stalled server cannot hide its
queueing. The mix: 80% reads by email, 20% by profile id, with `pii` and without. Baseline in the same process:
the store's own lookup latency without HTTP.

The generator is a small HTTP/1.1 client on asyncio streams (one keep-alive connection per sender), not httpx:
httpx spent ~3 ms of CPU per request here, more than the server, and on 2 cores shared with the server its
own lag showed up as server latency. Each response is checked (status 200, a body naming the profile).

CPU per request is the server's process tree CPU time (all workers, their audit flushes included) over the run,
divided by the requests sent; the generator's own CPU is reported beside it.

Targets (issue 6): p99 <= 20 ms and zero errors at 200 req/s for 60 s against 1M profiles.

    python -m bench.profile_api                      # the issue's scale -> bench/results/profile_api.json
    python -m bench.profile_api --profiles 100000 --seconds 20 --out /tmp/profile_api_small.json
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Timer, machine_info, write_result

SEP = "\x01"
CONF = "conf/cdp.yaml"


def doc(i: int) -> dict:
    return {"profile_id": f"p_{i:024x}", "identifiers": {"email": [f"user{i}@example.com"], "customer_id": [f"C{i:08d}"],
                                                      "cookie_id": [f"{i:08x}-aaaa-bbbb-cccc-{i:012x}"]},
            "traits": {"first_name": "Ann", "last_name": "Lee", "country": "GB", "city": "Leeds",
                       "birth_date": "1990-01-02", "signup_date": "2025-03-04"},
            "attributes": {f"attr_{k}": (i * k) % 97 for k in range(20)},
            "consent": {"email_marketing": "granted", "ads_personalisation": "denied", "analytics": "unknown"},
            "scores": {"clv": 12.5, "p_alive": 0.8, "rfm_segment": "Champions"},
            "audiences": [{"audience": "vip", "variant": None, "entered_at": "2026-11-01T00:00:00Z"}],
            "first_seen": "2026-10-01T00:00:00Z", "last_seen": "2026-11-01T00:00:00Z", "sources": ["crm", "web"],
            "updated_at": "2026-11-01T00:00:00Z"}


def rows(n: int):
    for i in range(n):
        d = doc(i)
        yield d["profile_id"], json.dumps(d), [f"{t}{SEP}{v}" for t, vs in d["identifiers"].items() for v in vs]


def _serve(config, port: int, workers: int) -> None:  # runs in the server process, like `cdp api serve`
    from cdp_spark.api.app import serve

    serve(config, host="127.0.0.1", port=port, workers=workers, conf_path=CONF)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and all its descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # the process ended while we looked
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(p, 0.0) for p in tree)


class Connection:
    """One keep-alive HTTP/1.1 connection sending GETs (the responses carry Content-Length)."""

    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, key: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        try:
            self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\n\r\n".encode())
            head = (await self.reader.readuntil(b"\r\n\r\n")).lower()
            status = int(head[9:12])
            body = await self.reader.readexactly(_content_length(head))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()  # the next request opens a fresh connection
            raise ConnectionError("bad or missing response") from None
        if b"\r\nconnection: close" in head:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _content_length(head: bytes) -> int:
    """The Content-Length of a lower-cased response head (ValueError when it has none)."""
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line[15:])
    raise ValueError("no content-length")


def schedule(n: int, keys: list[str], total: int) -> list[tuple[int, str, str, bytes]]:
    """The requests in send order: (index, path, key, the profile id the answer must name)."""
    rng = random.Random(7)
    out = []
    for k in range(total):
        i = rng.randrange(n)
        path = f"/v1/profiles/email/user{i}@example.com" if rng.random() < 0.8 else f"/v1/profiles/p_{i:024x}"
        out.append((k, path, keys[k % len(keys)], f'"p_{i:024x}"'.encode()))
    return out


async def load(port: int, keys: list[str], n: int, rate: float, seconds: float, senders: int = 32) -> dict:
    total = int(rate * seconds)
    todo = asyncio.Queue()
    for item in schedule(n, keys, total):
        todo.put_nowait(item)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = wrong = 0
    start = time.perf_counter() + 0.5

    # A bounded set of senders takes the requests in schedule order: when the server falls behind, requests start
    # late and the lateness is counted (latency runs from the scheduled time), without an unbounded client queue.
    async def sender() -> None:
        nonlocal failures, wrong
        conn = Connection(port)
        while not todo.empty():
            k, path, key, expect = todo.get_nowait()
            at = start + k / rate
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                status, body = await conn.get(path, key)
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200 and expect not in body:
                    wrong += 1
            except ConnectionError:
                failures += 1
            latencies.append((time.perf_counter() - at) * 1000)
        conn.close()

    await asyncio.gather(*[sender() for _ in range(senders)])
    elapsed = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100)
    errors = failures + wrong + sum(c for s, c in statuses.items() if s != 200)
    return {"requests": total, "achieved_rps": round(total / elapsed, 1), "p50_ms": round(q[49], 2),
            "p99_ms": round(q[98], 2), "max_ms": round(max(latencies), 2), "errors": errors,
            "connection_failures": failures, "wrong_profile": wrong, "statuses": statuses}


def run_load(*args, **kwargs) -> dict:
    """`load` on uvloop when it is installed (less generator CPU), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load(*args, **kwargs))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(load(*args, **kwargs))


def server_stack() -> dict[str, str]:
    """What uvicorn's "auto" settings pick on this machine (uvloop and httptools when installed)."""
    out = {}
    for module, name in (("uvloop", "loop"), ("httptools", "http")):
        try:
            __import__(module)
            out[name] = module
        except ImportError:
            out[name] = "asyncio" if name == "loop" else "h11"
    return out


def write(payload: dict, out: str | None) -> None:
    """bench/results/profile_api.json, or `out` for a reduced or exploratory run."""
    if out is None:
        write_result("profile_api", payload)
        return
    doc = {"benchmark": "profile_api", "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), **payload}
    Path(out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(json.dumps(doc, indent=2, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=None, help="API worker processes (default: api.workers)")
    parser.add_argument("--out", default=None, help="write the result here instead of bench/results/profile_api.json")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-api-"))
    try:
        run(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the 1M-profile store is 1.7 GB


def run(args: argparse.Namespace, root: Path) -> None:
    from cdp_spark.api.keys import store_for as keys_for
    from cdp_spark.api.store import store_for
    from cdp_spark.config import load_config

    os.environ["CDP_LAKE_ROOT"] = str(root)  # conf/cdp.yaml's lake root; the server's workers load the same config
    config = load_config(CONF)
    workers = args.workers or config.api.workers
    store = store_for(config)
    with Timer() as build:
        store.build(rows(args.profiles))
    keys = keys_for(config)
    secrets = [keys.create("bench-read", ["read"])[0], keys.create("bench-pii", ["read", "pii"])[0]]

    # baseline: the store's lookup without HTTP, same keys of the same profiles
    rng = random.Random(3)
    direct = []
    for _ in range(5000):
        i = rng.randrange(args.profiles)
        t = time.perf_counter()
        store.by_identifier("email", f"user{i}@example.com")
        direct.append((time.perf_counter() - t) * 1000)
    dq = statistics.quantiles(direct, n=100)

    port = _free_port()
    server = mp.get_context("spawn").Process(target=_serve, args=(config, port, workers), daemon=False)
    server.start()
    try:
        wait_ready(port, workers, secrets[0])
        cpu0, me0 = tree_cpu_seconds(server.pid), resource.getrusage(resource.RUSAGE_SELF)
        result = run_load(port, secrets, args.profiles, args.rate, args.seconds)
        cpu1, me1 = tree_cpu_seconds(server.pid), resource.getrusage(resource.RUSAGE_SELF)
    finally:
        server.terminate()  # SIGTERM: uvicorn shuts its workers down, each flushing its audit buffer
        server.join(60)
    me = (me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime)
    result["server_cpu_ms_per_request"] = round((cpu1 - cpu0) * 1000 / result["requests"], 3)
    result["generator_cpu_ms_per_request"] = round(me * 1000 / result["requests"], 3)
    write({
        "scale": {"profiles": args.profiles, "rate_rps": args.rate, "seconds": args.seconds,
                  "issue_scale": {"profiles": 1_000_000, "rate_rps": 200, "seconds": 60}},
        "server": {"workers": workers, **server_stack(), "audit_flush_seconds": config.api.audit.flush_seconds},
        "store": {"backend": "sqlite", "build_seconds": round(build.seconds, 1),
                  "file_mb": round(store.current().stat().st_size / 2**20, 1)},
        "baseline_store_lookup": {"p50_ms": round(dq[49], 3), "p99_ms": round(dq[98], 3)},
        "http": result,
        "targets": {"p99_ms_max": 20, "errors": 0,
                    "p99_met": result["p99_ms"] <= 20, "errors_met": result["errors"] == 0},
        "note": "loopback, generator on the same machine; latency from each request's scheduled send time",
    }, args.out)


def wait_ready(port: int, workers: int, key: str) -> None:
    """Until the server answers reads (every worker has started: each answers /health only once it is up)."""
    deadline = time.monotonic() + 120

    async def probe() -> bool:
        conns = [Connection(port) for _ in range(workers * 4)]  # new connections spread over the workers
        try:
            got = await asyncio.gather(*[c.get("/v1/profiles/p_" + "0" * 24, key) for c in conns])
            return all(status == 200 for status, _ in got)
        finally:
            for c in conns:
                c.close()

    while time.monotonic() < deadline:
        try:
            if asyncio.run(probe()):
                time.sleep(1.0)  # let the slowest worker finish importing before the clock starts
                return
        except (ConnectionError, OSError):
            pass
        time.sleep(0.2)
    raise SystemExit("the API server did not come up within 120 s")


if __name__ == "__main__":
    main()
