"""Other servers wrapping this project's predictor and CPU decode, for `make bench-peers` (loadtest/bench_peers.py).

Each module here is a server's entry point, run with `.venv-peers/bin/python -m loadtest.peers.<module>` (PyTriton
pins numpy < 2, so the peers have their own venv; they import `model` and `service.decoding` from the repository).
"""
