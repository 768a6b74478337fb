"""A real Spark standalone cluster on loopback for the tests: one master and two workers, each its own JVM process,
started with the `spark-class` script that pyspark's wheel ships. Executors then run in JVMs of their own, with
their own Python workers, which is what local mode hides (closures, serialisation, driver-only files, checkpoints).

Example:
    >>> with StandaloneCluster(tmp_path, workers=2) as cluster:      # doctest: +SKIP
    ...     subprocess.run(["spark-submit", "--master", cluster.master_url, "job.py"])
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env(**extra: str) -> dict[str, str]:
    """The environment for Spark's scripts: this interpreter for Python workers, loopback only."""
    env = {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])}
    env.pop("PYSPARK_GATEWAY_PORT", None)
    env.pop("PYSPARK_GATEWAY_SECRET", None)
    return {**env, **extra}


class StandaloneCluster:
    """A master and ``workers`` workers (``cores`` cores, ``memory`` each), stopped and cleaned up on exit."""

    def __init__(self, root: Path, *, workers: int = 2, cores: int = 1, memory: str = "2g",
                 defaults: dict[str, str] | None = None):
        self.root = Path(root)
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = free_port(), free_port()
        self.processes: list[subprocess.Popen] = []
        self.defaults = defaults or {}

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def submit_env(self, **extra: str) -> dict[str, str]:
        """The environment for spark-submit against this cluster: its master and its `spark-defaults.conf` (the
        cluster's own defaults, as an administrator would set them)."""
        return spark_env(MASTER=self.master_url, SPARK_CONF_DIR=str(self.root / "conf"), **extra)

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        work = self.root / name
        work.mkdir(parents=True, exist_ok=True)
        env = spark_env(SPARK_LOCAL_DIRS=str(work / "local"), SPARK_WORKER_DIR=str(work / "work"))
        cmd = [str(SPARK_HOME / "bin" / "spark-class"), *args]
        self.processes.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                               start_new_session=True))

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as r:
            return json.loads(r.read())

    def __enter__(self) -> "StandaloneCluster":
        (self.root / "conf").mkdir(parents=True, exist_ok=True)
        (self.root / "conf" / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in self.defaults.items()))
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        for i in range(self.workers):
            self._start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                        "--webui-port", "0", "--cores", str(self.cores), "--memory", self.memory,
                        "--work-dir", str(self.root / f"worker-{i}" / "work"), self.master_url)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            try:
                if self.state().get("aliveworkers") == self.workers:
                    return self
            except OSError:
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.root.glob("*.log")))
        raise RuntimeError(f"the standalone cluster did not come up with {self.workers} workers\n{logs}")

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.processes):
            p.terminate()
        for p in self.processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.root / "master" / "local", ignore_errors=True)
