"""The gateway's cap on glibc malloc arenas (service.http.decode.cap_malloc_arenas), counted by glibc itself."""

from __future__ import annotations

import subprocess
import sys

# Six threads allocate at the same time and keep what they got; then glibc's malloc_info lists its heaps.
PROBE = """
import ctypes, sys, tempfile, threading
cap = int(sys.argv[1])
if cap:
    from service.http.decode import cap_malloc_arenas
    assert cap_malloc_arenas(cap)
start = threading.Barrier(6)
kept = []
def allocate():
    start.wait()
    kept.extend(bytearray(8192) for _ in range(500))
threads = [threading.Thread(target=allocate) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as out:
    stream = ctypes.c_void_p(libc.fopen(out.name.encode(), b"w"))
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    print(open(out.name).read().count("<heap nr="))
"""


def heaps(cap: int) -> int:
    done = subprocess.run([sys.executable, "-c", PROBE, str(cap)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_capped_process_keeps_to_its_arenas_where_an_uncapped_one_grows_one_per_thread():
    assert heaps(0) > 2  # without the cap, threads that allocate get arenas of their own
    assert heaps(2) <= 2
