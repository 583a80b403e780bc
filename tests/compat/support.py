"""What the compat tests share: counting the requests compat sends, a host's own event."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from daemon.compat import ApiCacheService


def count_requests(service: ApiCacheService) -> list[str]:
    """The methods of every request the service sends from now on, in order."""
    sent: list[str] = []
    client = service.link._client
    real: Callable[..., Any] = client.call

    async def call(method: str, /, **params: Any) -> Any:
        sent.append(method)
        return await real(method, **params)

    client.call = call  # type: ignore[method-assign]
    return sent


class HostEventType(Enum):
    """GenreUpdater's own CacheEventType: the host emits events built from its classes."""

    TRACK_REMOVED = "track_removed"
    TRACK_MODIFIED = "track_modified"


@dataclass
class HostEvent:
    event_type: HostEventType
    track_id: str | None = None
    fingerprint: str | None = None
    metadata: dict[str, Any] | None = None
