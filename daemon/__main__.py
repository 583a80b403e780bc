"""`python -m daemon` is the same as the `musicd` command."""

from __future__ import annotations

import sys

from daemon.cli import main

sys.exit(main())
