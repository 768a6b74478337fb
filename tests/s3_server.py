"""A local S3 server for tests and benchmarks: moto's server mode on loopback, in a child process.

A child process rather than a thread: delta-rs calls may hold the GIL while they wait for the server's answer,
which a server thread in the same process could then never give.

Example:
    >>> proc, endpoint = start("cdp-test", "key", "secret")     # doctest: +SKIP
    >>> stop(proc)                                               # doctest: +SKIP
"""
from __future__ import annotations

import subprocess
import sys

SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the parent closes our stdin
"""


def start(bucket: str, access_key: str, secret_key: str) -> tuple[subprocess.Popen, str]:
    """Start the server on a free loopback port and create ``bucket``; (process, endpoint URL)."""
    import boto3

    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    port = proc.stdout.readline().strip() if proc.stdout else ""
    if not port.isdigit():
        proc.kill()
        raise RuntimeError("moto's S3 server did not start (is the test extra installed? pip install -e '.[test]')")
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
                 aws_secret_access_key=secret_key).create_bucket(Bucket=bucket)
    return proc, endpoint


def stop(proc: subprocess.Popen) -> None:
    if proc.stdin:
        proc.stdin.close()
    proc.terminate()
    proc.wait(timeout=30)
