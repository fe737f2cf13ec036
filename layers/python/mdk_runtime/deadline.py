"""Stopping an inference when its request's deadline passes.

onnxruntime checks ``RunOptions.terminate`` between kernels (inside ``Loop``/``Scan`` bodies too) and
fails the run when it is set.  One watchdog thread per process sets it for runs whose deadline has
passed, so a slow request ends with a clear 504 (:class:`~mdk_runtime.errors.InferenceTimeout`) while the
process still has time to answer, instead of Lambda killing the sandbox mid-request (a bare 502 for the
caller and a cold start for the next one).  Watching a run costs a heap push and a notify, no thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time

import onnxruntime as ort

# onnxruntime logs every failed kernel to stderr at ERROR, quoting the values that failed it (a Gather
# index, an Expand shape): client data in the function's logs. Runs log only FATAL; the kit logs each
# failure itself, a server fault with onnxruntime's detail, a refused input without the values.
QUIET_LOG_LEVEL = 4


def quiet_run_options() -> ort.RunOptions:
    options = ort.RunOptions()
    options.log_severity_level = QUIET_LOG_LEVEL
    return options


#: The run options of an unwatched run (read-only: safe to share between threads).
QUIET_RUN_LOG = quiet_run_options()


class _Watch:
    __slots__ = ("active", "deadline", "options")

    def __init__(self, deadline: float, options: ort.RunOptions | None = None) -> None:
        self.deadline = deadline
        self.options = options if options is not None else quiet_run_options()
        self.active = True


class Watchdog:
    """Sets ``terminate`` on the run options of watched runs once their deadline (monotonic) passes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        # Run options of released watches that were never stopped: reused (a new RunOptions costs
        # several us per request). Released under the lock, so the watchdog never stops a reused one.
        self._spare: list[ort.RunOptions] = []

    def watch(self, deadline: float) -> _Watch:
        with self._cond:
            watch = _Watch(deadline, self._spare.pop() if self._spare else None)
            heapq.heappush(self._heap, (deadline, next(self._seq), watch))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mdk-deadline", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()
        return watch

    def release(self, watch: _Watch) -> None:
        with self._cond:
            watch.active = False  # the entry leaves the heap when its deadline comes up
            if not watch.options.terminate and len(self._spare) < 64:
                self._spare.append(watch.options)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, watch = heapq.heappop(self._heap)
                    if watch.active:
                        watch.options.terminate = True
                self._cond.wait(self._heap[0][0] - now if self._heap else None)


WATCHDOG = Watchdog()
