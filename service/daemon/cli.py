"""`hornet-serve`: a small supervisor that runs the server (service/daemon/server.py) and passes signals on to it.

The server (Ray, the app, HAProxy) runs in a session of its own. A signal sent to hornet-serve's whole process
group (a supervisor's stop, `timeout`, a CI runner, Ctrl-C in a terminal) then reaches only this process, which
passes it on, and the server drains as for any SIGTERM: sent to the group directly, it also reached Ray's own
processes, which died at once, and the server's shutdown then waited a minute for its dead GCS. If this process
dies, the kernel sends the server SIGTERM. This module imports nothing heavy: it only starts the server.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

SERVER_ENV = "HORNET_SUPERVISED_SERVER"  # set in the server process (not HORNET_SERVE_*: those are settings)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def set_parent_death_signal(sig: signal.Signals) -> bool:
    """Ask the kernel to send `sig` to this process when the thread that started it exits (Linux; it survives
    execve). False where it is not available."""
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def supervise(args: list[str]) -> int:
    server = subprocess.Popen(
        [sys.executable, "-m", "service.daemon.cli", *args],
        env={**os.environ, SERVER_ENV: "1"},
        start_new_session=True,
        preexec_fn=lambda: set_parent_death_signal(signal.SIGTERM),
    )
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda received, _frame: server.send_signal(received))
    code = server.wait()
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if os.environ.get(SERVER_ENV) == "1":
        from service.daemon.server import main as serve  # here, not above: the supervisor stays a small process

        return serve(args)
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
