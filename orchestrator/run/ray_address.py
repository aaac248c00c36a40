"""A wrong Ray address is an error that names it, in seconds: `connecting_to(address, source)`
checks the address before `ray.init` runs in its block, and turns Ray's failure to connect into
a `ClusterConnectionError`.

Left to itself, `ray.init(address="HOST:PORT")` with no Ray there retries for about ten minutes
(20 attempts of 30 s each), then raises a bare ConnectionError. So, before Ray is asked:
  - the address must have a form Ray takes (HOST:PORT, `auto`, ray://HOST:PORT); a dashboard
    URL (http://...) is named as such, since `sweep submit` is what takes one;
  - a TCP connection to it must open within `PROBE_TIMEOUT_S`: a closed port, an unknown host
    or an unreachable network fail at once;
  - what answers must not be a web server (the dashboard's port given for the GCS's).
Something that accepts the connection but is no Ray still costs `GCS_CONNECT_ATTEMPTS` of Ray's
30-second attempts (`RAY_gcs_server_port_wait_time_s`, when the user has not set it), not 20.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

from orchestrator.run.errors import ClusterConnectionError

PROBE_TIMEOUT_S = 10.0  # a TCP connect to a reachable host takes milliseconds
HTTP_PROBE_TIMEOUT_S = 3.0  # a GCS answers an HTTP request at once, with an HTTP/2 frame
GCS_CONNECT_ATTEMPTS = 3  # Ray's default is 20: ten minutes for an address that is not Ray's
ATTEMPTS_VAR = "RAY_gcs_server_port_wait_time_s"  # read by Ray's Node at connect time
MAX_REASON_CHARS = 300  # of the error Ray wrapped: its first sentences say what went wrong

FORMS = ("HOST:PORT of the head node's GCS (port 6379 unless `ray start --head --port` chose "
         "another), `auto` for a cluster started with `ray start` on this machine, `local` for "
         "a new Ray in this process, or ray://HOST:10001 for Ray Client")


def fix(source: str) -> str:
    where = "correct RAY_ADDRESS or unset it" if source == "RAY_ADDRESS" else "correct --address"
    return ("start a cluster with `ray start --head` (or `python -m cluster.local up` for a test "
            f"cluster on this machine), pass --address local to run on a new Ray in this "
            f"process, or {where}")


def _split(hostport: str) -> tuple[str, int] | None:
    host, colon, port = hostport.rpartition(":")
    if not colon or not host.strip("[]") or "/" in hostport or not port.isdigit():
        return None
    if not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def endpoint(address: str, source: str) -> tuple[str, int]:
    """The host and port `ray.init(address=address)` connects to (a localhost address becomes
    this node's IP, as Ray does); ClusterConnectionError when Ray would not take the address."""
    scheme, sep, rest = address.partition("://")
    if sep and scheme in ("http", "https"):
        raise ClusterConnectionError(
            f"{source} {address!r} is a dashboard (Ray Jobs API) URL, which `sweep submit` "
            f"takes; `sweep run`, `validate` and `resume` connect to the cluster itself: give "
            f"{FORMS}")
    if sep and scheme != "ray":
        raise ClusterConnectionError(f"{source} {address!r} is not a Ray address; give {FORMS}")
    if not sep and address != "auto" and _split(address) is None:
        raise ClusterConnectionError(f"{source} {address!r} is not a Ray address; give {FORMS}")
    if sep:
        hostport = rest.split("/", 1)[0]
    else:
        from ray._private.services import canonicalize_bootstrap_address  # what ray.init does

        try:
            hostport = canonicalize_bootstrap_address(address) or ""
        except ConnectionError as err:  # `auto`, and no cluster on this machine
            raise ClusterConnectionError(
                f"{source} {address!r}: no Ray cluster runs on this machine ({err}); "
                f"{fix(source)}") from None
    found = _split(hostport)
    if found is None:  # `auto` that resolved to something odd (RAY_ADDRESS)
        raise ClusterConnectionError(
            f"{source} {address!r} points at {hostport!r}, which is not a Ray address; give "
            f"{FORMS}")
    return found


def unreachable(host: str, port: int) -> str | None:
    """Why no Ray can answer at HOST:PORT, or None if something that may be Ray listens there."""
    try:
        conn = socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S)
    except socket.gaierror as err:
        return f"no host named {host!r} ({err.strerror})"
    except ConnectionRefusedError:
        return f"nothing listens on {host}:{port}"
    except TimeoutError:
        return f"{host}:{port} did not answer within {PROBE_TIMEOUT_S:.0f} s"
    except OSError as err:
        return f"{host}:{port} cannot be reached ({err.strerror or err})"
    with conn:
        try:
            conn.settimeout(HTTP_PROBE_TIMEOUT_S)
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = conn.recv(5)
        except OSError:  # silent or closed: not a web server; Ray finds out what it is
            return None
    if reply.startswith(b"HTTP/"):
        return (f"{host}:{port} is a web server (the Ray dashboard's port?), not the cluster's "
                "GCS")
    return None


def _why(err: BaseException) -> str:
    """Ray's ConnectionError and, when Ray wrapped one, the last line of what it wrapped (a
    traceback as text: the GCS client's own error, e.g. a missing auth token)."""
    why = str(err)
    if err.__cause__ is not None:
        lines = str(err.__cause__).strip().splitlines()
        last = lines[-1] if lines else ""
        if len(last) > MAX_REASON_CHARS:  # whole sentences, as many as fit
            cut = last.rfind(". ", 0, MAX_REASON_CHARS)
            last = last[:cut + 1] if cut > 0 else last[:MAX_REASON_CHARS] + "..."
        why = f"{why}: {last}" if last else why
    return why


@contextlib.contextmanager
def connecting_to(address: str, source: str) -> Iterator[None]:
    """Check `address` (given as `source`: "--address" or "RAY_ADDRESS"), then run the block
    that connects Ray to it; a failure to connect is a ClusterConnectionError."""
    host, port = endpoint(address, source)
    reason = unreachable(host, port)
    if reason is not None:
        raise ClusterConnectionError(
            f"cannot reach a Ray cluster at {source} {address!r}: {reason}; {fix(source)}")
    set_here = ATTEMPTS_VAR not in os.environ
    if set_here:
        os.environ[ATTEMPTS_VAR] = str(GCS_CONNECT_ATTEMPTS)
    try:
        yield
    except ConnectionError as err:
        if isinstance(err, ClusterConnectionError):
            raise
        raise ClusterConnectionError(
            f"cannot connect to a Ray cluster at {source} {address!r} ({_why(err)}); for a "
            "cluster with token auth, export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH=FILE "
            f"(or RAY_AUTH_TOKEN); else {fix(source)}") from err
    finally:
        if set_here:
            os.environ.pop(ATTEMPTS_VAR, None)
