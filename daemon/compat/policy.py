"""The original's cache policies and cache events: `ApiCacheService.cache_config` and
`.event_manager` are these, with the behaviour its callers use.

The host program emits events built from its own classes (`CacheEvent`, `CacheEventType`):
`EventDrivenCacheManager` reads them by attribute and matches the type by its `value`
("track_removed"), so the host's objects and these work alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Protocol

MINUTE: Final = 60
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
MONTH: Final = 30 * DAY


class CacheContentType(Enum):
    TRACK_METADATA = "track_metadata"
    SUCCESSFUL_API_METADATA = "successful_api_metadata"
    FAILED_API_LOOKUP = "failed_api_lookup"
    ALBUM_YEAR = "album_year"
    NEGATIVE_RESULT = "negative_result"
    GENERIC = "generic"


class InvalidationStrategy(Enum):
    TIME_BASED = "time_based"
    EVENT_DRIVEN = "event_driven"
    FINGERPRINT_BASED = "fingerprint_based"
    HYBRID = "hybrid"


@dataclass
class CachePolicy:
    content_type: CacheContentType
    ttl_seconds: int
    invalidation_strategy: InvalidationStrategy
    max_size_mb: int | None = None
    cleanup_threshold: float = 0.8
    description: str = ""


class SmartCacheConfig:
    """The policies by content type; `get_policy` is read each time an entry is judged, so a
    policy changed here applies to every entry, old ones included."""

    MINUTE: Final = MINUTE
    HOUR: Final = HOUR
    DAY: Final = DAY
    MONTH: Final = MONTH
    INFINITE_TTL: Final = 365 * DAY * 10
    DEFAULT_NEGATIVE_RESULT_TTL: Final = MONTH

    def __init__(self, config: Any = None) -> None:
        self._config = config
        self._policies = self._create_default_policies()

    def _negative_result_ttl(self) -> int:
        caching = getattr(self._config, "caching", None)
        ttl = getattr(caching, "negative_result_ttl", None)
        return self.DEFAULT_NEGATIVE_RESULT_TTL if ttl is None else int(ttl)

    def _create_default_policies(self) -> dict[CacheContentType, CachePolicy]:
        kinds = CacheContentType
        forever, event = self.INFINITE_TTL, InvalidationStrategy.EVENT_DRIVEN
        timed = InvalidationStrategy.TIME_BASED
        return {
            kinds.TRACK_METADATA: CachePolicy(kinds.TRACK_METADATA, forever, event, 100),
            kinds.SUCCESSFUL_API_METADATA: CachePolicy(
                kinds.SUCCESSFUL_API_METADATA, forever, event, 30
            ),
            # As the original: a failed lookup is asked again after an hour.
            kinds.FAILED_API_LOOKUP: CachePolicy(kinds.FAILED_API_LOOKUP, HOUR, timed, 5),
            kinds.ALBUM_YEAR: CachePolicy(kinds.ALBUM_YEAR, MONTH, InvalidationStrategy.HYBRID, 20),
            kinds.NEGATIVE_RESULT: CachePolicy(
                kinds.NEGATIVE_RESULT, self._negative_result_ttl(), timed, 10
            ),
            kinds.GENERIC: CachePolicy(kinds.GENERIC, 5 * MINUTE, timed, 30),
        }

    def get_policy(self, content_type: CacheContentType) -> CachePolicy:
        return self._policies.get(content_type, self._policies[CacheContentType.GENERIC])

    def get_ttl(self, content_type: CacheContentType) -> int:
        return self.get_policy(content_type).ttl_seconds

    def should_use_event_invalidation(self, content_type: CacheContentType) -> bool:
        strategy = self.get_policy(content_type).invalidation_strategy
        return strategy in (InvalidationStrategy.EVENT_DRIVEN, InvalidationStrategy.HYBRID)

    @staticmethod
    def is_persistent_cache(content_type: CacheContentType) -> bool:
        return content_type in (
            CacheContentType.TRACK_METADATA,
            CacheContentType.SUCCESSFUL_API_METADATA,
            CacheContentType.ALBUM_YEAR,
            CacheContentType.NEGATIVE_RESULT,
        )


class CacheEventType(Enum):
    TRACK_ADDED = "track_added"
    TRACK_REMOVED = "track_removed"
    TRACK_MODIFIED = "track_modified"
    FINGERPRINT_CHANGED = "fingerprint_changed"
    LIBRARY_SYNC = "library_sync"
    MANUAL_INVALIDATION = "manual_invalidation"

    # The host compares the events it is handed with its own enum of the same values.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Enum):
            return bool(self.value == other.value)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.value)


_NEEDS_TRACK: Final = frozenset({"track_added", "track_removed", "track_modified"})


@dataclass
class CacheEvent:
    event_type: CacheEventType
    track_id: str | None = None
    fingerprint: str | None = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.event_type.value in _NEEDS_TRACK and not self.track_id:
            raise ValueError(f"track_id required for {self.event_type.value}")
        if self.event_type is CacheEventType.FINGERPRINT_CHANGED and not self.fingerprint:
            raise ValueError("fingerprint required for fingerprint_changed event")


class AnyCacheEvent(Protocol):
    """A CacheEvent of this module or of the host program: read by attribute."""

    @property
    def event_type(self) -> Enum: ...

    @property
    def track_id(self) -> str | None: ...

    @property
    def metadata(self) -> dict[str, Any] | None: ...


Handler = Callable[[Any], None]


class EventDrivenCacheManager:
    """Calls the handlers registered for an event's type, each isolated from the others'
    errors, as the original does."""

    def __init__(self, config: SmartCacheConfig) -> None:
        self.config = config
        self.logger = logging.getLogger(__name__)
        self._event_handlers: dict[str, list[Handler]] = {}

    def register_event_handler(self, event_type: Enum, handler: Handler) -> None:
        self._event_handlers.setdefault(str(event_type.value), []).append(handler)

    def emit_event(self, event: AnyCacheEvent) -> None:
        kind = str(event.event_type.value)
        self.logger.info("Cache event: %s %s", kind, event.track_id or "")
        for handler in self._event_handlers.get(kind, []):
            try:
                handler(event)
            except (RuntimeError, ValueError, TypeError, AttributeError, KeyError) as exc:
                self.logger.exception("Event handler %r failed: %s", handler, exc)
