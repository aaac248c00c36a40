"""A real S3-compatible server (moto's server mode) on loopback, for storage tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SECRET = "sweep-test-secret-key-0123456789"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_s3(bucket: str = "sweeps") -> Iterator[dict[str, Any]]:
    """Start the server, create `bucket`, and put credentials in this process's environment
    (only there: whatever starts Ray nodes afterwards passes them on, as a real node's
    environment would). Everything is restored on exit."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID="sweeptest", AWS_SECRET_ACCESS_KEY=SECRET)
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    try:
        for _ in range(100):
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:
                time.sleep(0.1)
        yield {"endpoint": endpoint, "client": client, "process": proc,
               "uri": lambda prefix: f"s3://{bucket}/{prefix}?region=us-east-1"
                                     f"&endpoint_override={endpoint}"}
    finally:
        proc.send_signal(18)  # SIGCONT, in case a test left it stopped
        proc.terminate()
        proc.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def list_keys(client: Any, bucket: str, prefix: str) -> list[str]:
    return [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
