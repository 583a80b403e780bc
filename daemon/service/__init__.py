"""What the running daemon offers its control socket: `core.Service` (the `DaemonApi`), the
programs' calls (`programs.py`), the cache's (`cache_api.py`, with which sources a write may name
in `sources.py`), and housekeeping."""
