"""Dynamic batching: concurrent requests coalesced into one inference, each caller given its own rows.

Requests wait at most ``max_delay_ms`` for others to join, and a batch holds at most ``max_rows``
rows (a multiple of a fixed batch dimension, so the model's chunks stay full). Only requests whose
tensors agree beyond the batch dimension (shape and dtype) share a batch. Inference runs on one
worker thread (onnxruntime releases the GIL), so the event loop keeps decoding the next requests
while a batch runs. Outputs are split back by row counts; a model with an output that is not one
row per instance (a pooled scalar) cannot be split and is run one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mdk_runtime.errors import InvalidInput

log = logging.getLogger(__name__)

RunFn = Callable[[dict[str, np.ndarray], int], dict[str, Any]]


@dataclass
class _Pending:
    feeds: dict[str, np.ndarray]
    n: int
    key: tuple[Any, ...]
    future: asyncio.Future[dict[str, Any]]
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class BatchStats:
    """What the batcher did: how many batches, rows and requests (for the benchmark and logs)."""

    batches: int = 0
    rows: int = 0
    requests: int = 0

    @property
    def mean_rows(self) -> float:
        return self.rows / self.batches if self.batches else 0.0


def _key(feeds: dict[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in sorted(feeds.items()))


def _rows(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else None
    return len(value) if isinstance(value, list) else None


class DynamicBatcher:
    """Coalesces ``run(feeds, n)`` calls from many coroutines into fewer model runs."""

    def __init__(
        self,
        run: RunFn,
        *,
        max_rows: int,
        max_delay_ms: float,
        fixed_batch: int | None = None,
        enabled: bool = True,
    ) -> None:
        if fixed_batch:
            max_rows = max(fixed_batch, max_rows // fixed_batch * fixed_batch)
        self._run = run
        self.max_rows = max(1, max_rows)
        self.max_delay = max(0.0, max_delay_ms) / 1000
        self.enabled = enabled and self.max_rows > 1
        self.stats = BatchStats()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._splittable = True

    async def run(self, feeds: dict[str, np.ndarray], n: int) -> dict[str, Any]:
        """The model's outputs for exactly these ``n`` rows."""
        loop = asyncio.get_running_loop()
        if not self.enabled or not self._splittable or n >= self.max_rows:
            return await self._infer(loop, feeds, n, requests=1)
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._serve(), name="dynamic-batcher")
        pending = _Pending(feeds, n, _key(feeds), loop.create_future())
        self._queue.put_nowait(pending)
        return await pending.future

    async def _infer(
        self, loop: asyncio.AbstractEventLoop, feeds: dict[str, np.ndarray], n: int, *, requests: int
    ) -> dict[str, Any]:
        outputs = await loop.run_in_executor(self._executor, self._run, feeds, n)
        self.stats.batches += 1
        self.stats.rows += n
        self.stats.requests += requests
        return outputs

    async def _serve(self) -> None:
        assert self._queue is not None
        queue = self._queue
        waiting: list[_Pending] = []
        while True:
            if not waiting:
                waiting.append(await queue.get())
            first = waiting[0]
            deadline = first.queued_at + self.max_delay
            # Requests that came while the previous batch ran join at once; then wait out the delay.
            while sum(p.n for p in waiting if p.key == first.key) < self.max_rows:
                try:
                    waiting.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                try:
                    waiting.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            batch: list[_Pending] = []
            rest: list[_Pending] = []
            rows = 0
            for p in waiting:
                if p.key == first.key and rows + p.n <= self.max_rows:
                    batch.append(p)
                    rows += p.n
                else:
                    rest.append(p)  # another shape, or no room left: first in line for the next batch
            waiting = rest
            await self._run_batch(batch, rows)

    async def _run_batch(self, batch: list[_Pending], rows: int) -> None:
        loop = asyncio.get_running_loop()
        live = [p for p in batch if not p.future.done()]  # a caller may have gone away
        if not live:
            return
        if len(live) == 1:
            await self._settle(live[0], loop, live[0].feeds, live[0].n)
            return
        feeds = {name: np.concatenate([p.feeds[name] for p in live]) for name in live[0].feeds}
        total = sum(p.n for p in live)
        try:
            outputs = await self._infer(loop, feeds, total, requests=len(live))
        except InvalidInput:
            # The model refused some values (input_rejected_by_model): one caller's rows may have failed
            # the whole batch. Each request runs alone, so only the caller whose values they were hears.
            for p in live:
                await self._settle(p, loop, p.feeds, p.n)
            return
        except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the failure
            for p in live:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        if any(_rows(v) != total for v in outputs.values()):
            # An output that is not one row per instance cannot be split between callers.
            log.warning("model outputs are not per instance: dynamic batching turned off")
            self._splittable = False
            for p in live:
                await self._settle(p, loop, p.feeds, p.n)
            return
        start = 0
        for p in live:
            stop = start + p.n
            if not p.future.done():
                p.future.set_result({k: v[start:stop] for k, v in outputs.items()})
            start = stop

    async def _settle(
        self, pending: _Pending, loop: asyncio.AbstractEventLoop, feeds: dict[str, np.ndarray], n: int
    ) -> None:
        try:
            result = await self._infer(loop, feeds, n, requests=1)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            if not pending.future.done():
                pending.future.set_exception(exc)
            return
        if not pending.future.done():
            pending.future.set_result(result)

    async def close(self) -> None:
        """Stop taking work; requests already queued finish first."""
        if self._worker is not None:
            assert self._queue is not None
            while not self._queue.empty():
                await asyncio.sleep(0.005)
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=True)
