"""The `hornet-serve` process: a local Ray with the project's Ray settings, the app deployed on it, live reloads,
and the stop that drains it (also `python -m service.daemon.drain` for a cluster started otherwise)."""
