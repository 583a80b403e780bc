"""What a host program asks in one turn of its event loop, sent as one batch call.

GenreUpdater looks up hundreds of albums in one `gather` and schedules one invalidation task
per track in `emit_*` loops. Each such call joins a queue; the first one schedules the send
with `call_soon`, which runs after every task that was already ready, so the rest of the
`gather` (or of the loop's tasks) joins the same batch. Each caller still gets its own result,
as if it had asked alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    def __init__(self, send: Callable[[list[T]], Awaitable[list[R]]]) -> None:
        # `send` answers a result per item, in order, and never raises for the host.
        self._send = send
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if len(self._queue) == 1:
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        try:
            results = await self._send([item for item, _ in batch])
        except BaseException as err:
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            raise
        for (_, future), result in zip(batch, results, strict=True):
            # A caller that was cancelled meanwhile has no one to tell.
            if not future.done():
                future.set_result(result)

    async def drain(self) -> None:
        """Wait for the batches under way."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
