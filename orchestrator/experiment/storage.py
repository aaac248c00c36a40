"""Where experiments live: a local/NFS folder or S3-compatible object storage.

`storage_path` is a folder or a URI that pyarrow understands, e.g.
`s3://bucket/prefix?region=us-east-1&endpoint_override=http://127.0.0.1:9000` for MinIO or any
S3-compatible store (pyarrow ignores AWS_ENDPOINT_URL, so the endpoint goes in the URI).
Credentials come only from the environment or the standard AWS credential chain; a URI that
carries keys is rejected so they never land in experiment files or trial configs.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyarrow.fs as pafs

from orchestrator.config.errors import UserError

_SECRET_PARAMS = ("access_key", "secret_key", "session_token")


class StorageError(UserError, ValueError):
    """The storage path is unusable; the message says why and what to do."""


class StorageReadError(UserError, OSError):
    """Object storage did not give back what was asked (endpoint, network, credentials,
    permissions); the message names the URI and what the store said."""


@dataclass(frozen=True)
class Storage:
    uri: str  # as configured (scheme and query kept, `~` expanded)
    fs: pafs.FileSystem
    root: str  # the path inside `fs`

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def uri_of(self, *parts: str) -> str:
        """A URI (or local path) for `parts` below the root, keeping the query string."""
        return self.uri_for_path(self.path(*parts))

    def uri_for_path(self, fs_path: str) -> str:
        """The URI of a path inside this filesystem (the same store, endpoint and options)."""
        if self.is_local:
            return fs_path
        split = urlsplit(self.uri)
        query = f"?{split.query}" if split.query else ""
        return f"{split.scheme}://{fs_path}{query}"

    @contextlib.contextmanager
    def reading(self, fs_path: str | None = None) -> Iterator[None]:
        """An OSError of object storage in the block (pyarrow's S3 client: no answer from the
        endpoint, refused credentials, a missing bucket) is a StorageReadError naming the URI
        read; a local folder's errors are left as they are."""
        try:
            yield
        except OSError as err:
            if self.is_local or isinstance(err, UserError):
                raise
            uri = self.uri_for_path(fs_path) if fs_path is not None else self.uri
            raise StorageReadError(
                f"cannot read {uri}: {err}. Check the URI, its endpoint_override (for "
                "MinIO or another S3-compatible store: ?endpoint_override=http://HOST:PORT), "
                "the network to it, and the credentials (AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or an AWS profile)") from err

    def download(self, fs_path: str, local_dir: str) -> str:
        """Copy a folder to local disk (a no-op for local storage); returns the local path."""
        if self.is_local:
            return fs_path
        with self.reading(fs_path):
            pafs.copy_files(fs_path, local_dir, source_filesystem=self.fs,
                            destination_filesystem=pafs.LocalFileSystem())
        return local_dir

    def exists(self, *parts: str) -> bool:
        with self.reading(self.path(*parts)):
            return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_text(self, text: str, *parts: str) -> None:
        target = self.path(*parts)
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(target) as out:
            out.write(text.encode())

    def read_text(self, *parts: str) -> str:
        target = self.path(*parts)
        with self.reading(target), self.fs.open_input_stream(target) as src:
            return src.read().decode()


def is_uri(storage_path: str) -> bool:
    """A URI that pyarrow opens (`s3://`, `gs://`, `hdfs://`, `file://`, ...), not a local path."""
    return "://" in storage_path


def open_storage(storage_path: str) -> Storage:
    query = parse_qs(urlsplit(storage_path).query)
    leaked = [p for p in _SECRET_PARAMS if p in query]
    if leaked:
        raise StorageError(
            f"storage_path: carries credentials ({', '.join(leaked)}); remove them from the URI "
            "and set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an AWS profile) instead, so "
            "they are never written into experiment files"
        )
    if not is_uri(storage_path):
        local = os.path.abspath(os.path.expanduser(storage_path))
        return Storage(uri=local, fs=pafs.LocalFileSystem(), root=local)
    try:
        fs, root = pafs.FileSystem.from_uri(storage_path)
    except Exception as err:
        raise StorageError(f"storage_path: {storage_path!r} is not usable: {err}") from None
    return Storage(uri=storage_path, fs=fs, root=root)


def probe(storage_path: str) -> str | None:
    """Write, read back and delete a small file; None if that worked, else the error."""
    try:
        storage = open_storage(storage_path)
        name = f".preflight-{uuid.uuid4().hex}"
        storage.write_text("ok", name)
        ok = storage.read_text(name) == "ok"
        storage.fs.delete_file(storage.path(name))
        return None if ok else "read back different bytes"
    except Exception as err:
        return f"{type(err).__name__}: {err}"


PROBE_TIMEOUT_S = float(os.environ.get("SWEEP_STORAGE_PROBE_TIMEOUT_S", "30"))


def probe_within(storage_path: str, timeout_s: float | None = None) -> str | None:
    """`probe`, given up after `timeout_s`: an endpoint that never answers is an error, not a
    hang (the S3 client retries a silent endpoint for minutes)."""
    import concurrent.futures

    timeout_s = PROBE_TIMEOUT_S if timeout_s is None else timeout_s
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(probe, storage_path).result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        return f"no answer within {timeout_s:.0f} s"
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _unwritable(where: str, storage_path: str, error: str) -> str:
    return (f"storage_path: {where} cannot write to {storage_path!r} ({error}); check the path "
            "and its permissions, or for s3:// the endpoint_override, the network and the "
            "credentials. Every node writes its own checkpoints there: mount the folder on every "
            "node with write access, or use object storage with credentials on every node")


def check_writable_here(storage_path: str) -> list[str]:
    """The storage check of `sweep validate --no-cluster`: this machine only."""
    error = probe_within(storage_path)
    return [] if error is None else [_unwritable("this machine", storage_path, error)]


def check_writable_from_every_node(storage_path: str, nodes: list[dict[str, Any]]) -> list[str]:
    """Run `probe` on each alive node (pinned there) before any trial starts."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote_probe = ray.remote(probe_within)
    pending = {}
    for node in nodes:
        if not node.get("Alive", True):
            continue
        strategy = NodeAffinitySchedulingStrategy(node_id=node["NodeID"], soft=False)
        ref = remote_probe.options(num_cpus=0, scheduling_strategy=strategy).remote(storage_path)
        pending[ref] = node
    problems = []
    for ref, node in pending.items():
        try:
            error = ray.get(ref, timeout=PROBE_TIMEOUT_S + 60)  # + starting the task
        except Exception as err:  # the node died or the task could not run there
            error = f"{type(err).__name__}: {err}"
        if error is not None:
            where = f"node {node.get('NodeManagerAddress')} (id {node['NodeID'][:12]})"
            problems.append(_unwritable(where, storage_path, error))
    return problems
