"""What the control server needs from the running daemon, and nothing more.

`daemon.service.core.Service` provides it; the control package never imports the daemon's lifecycle
(`daemon.app`), so either side can change without the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from daemon.journal.hub import EventHub
from daemon.journal.triggers import Triggers
from daemon.service.cache_api import CacheApi
from daemon.service.programs import ProgramApi


class ScanResult(Protocol):
    ok: bool
    error: str | None

    def as_dict(self) -> dict[str, object]: ...


class DaemonApi(Protocol):
    hub: EventHub
    programs: ProgramApi
    cache: CacheApi
    triggers: Triggers

    @property
    def socket_path(self) -> Path: ...

    @property
    def last_seq(self) -> int: ...

    @property
    def epoch(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def flush(self, reason: str = "requested") -> dict[str, Any]: ...

    async def rescan(self, *, accept_removals: bool = False) -> ScanResult: ...

    def request_shutdown(self, reason: str = "requested") -> None: ...

    def track(self, field: str, value: str | int) -> dict[str, Any] | None:
        """The track whose `field` (persistent_id or one of APP_ID_FIELDS) is `value`."""
        ...

    def album(self, artist: str, album: str) -> list[dict[str, Any]]: ...

    def expectations(self) -> dict[str, int]: ...
