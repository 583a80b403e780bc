"""musicd: keeps a library snapshot and an API response cache in step with a Music library."""

from __future__ import annotations

__version__ = "0.1.0"
