"""One doctor check's result, and a probe run under a deadline (doctor.py, doctor_library.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

Status = Literal["ok", "warn", "fail", "skip"]
T = TypeVar("T")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    def line(self) -> str:
        tail = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.status:<4} {self.name}: {self.message}{tail}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_deadline(work: Callable[[], T], seconds: float) -> tuple[bool, T | BaseException]:
    """Run `work` on a daemon thread; (finished, result or exception). A hang is left behind."""
    box: list[T | BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as err:
            box.append(err)

    thread = threading.Thread(target=run, name="musicd-doctor-read", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive() or not box:
        return False, TimeoutError()
    return True, box[0]
