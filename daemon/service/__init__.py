"""What the running daemon offers its control socket: `core.Service` (the `DaemonApi`), the
programs' calls (`programs.py`), which cache sources a write may name, and housekeeping."""
