"""Child processes of the local cloud that end with the process that started them, however it ends.

The kit's emulators and serving containers run in sessions of their own (``start_new_session``), so
that a Ctrl-C in the terminal reaches only the parent, which stops them in order. The flip side: when
the parent is killed (SIGKILL, an OOM kill, a supervisor's SIGTERM then SIGKILL), nothing signals them
and they are reparented to init. :func:`spawn` closes that hole three ways:

* a parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``, set in the child between fork and exec, after
  any uid change, since changing credentials clears it). The kernel sends it when the *thread* that forked
  the child exits, not the process: every child is therefore forked by one long-lived daemon thread of
  this module (a request thread of the local gateway may start a function and then end). The child also
  checks ``getppid()`` after the ``prctl``, in case the parent died in between;
* an ``atexit`` hook that kills every child still running (its whole session) when the interpreter exits
  normally;
* callers still stop their children gracefully (SIGTERM) on a normal shutdown, as before.

Elsewhere than Linux there is no parent-death signal; the ``atexit`` hook remains.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import queue
import signal
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


_PRCTL = _load_prctl()  # resolved here, in the parent: the child only calls it
#: every child spawned and still referenced -> whether it leads a session of its own
_children: weakref.WeakKeyDictionary[subprocess.Popen[Any], bool] = weakref.WeakKeyDictionary()
_children_lock = threading.Lock()
#: (pid, start time in clock ticks, leads a session) of every child ever spawned: what :func:`leftovers`
#: checks (the start time tells a reused pid from ours).
_spawned: list[tuple[int, int | None, bool]] = []


def _death_link(signum: int, parent: int) -> Callable[[], None]:
    """The ``preexec_fn``: die with ``signum`` when the forking thread (or the whole parent) ends."""

    def link() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signum, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would signal us
            os.kill(os.getpid(), signum)

    return link


class _Spawner:
    """The one thread that forks every child (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, work: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="mdk-spawner")
                self._thread.start()
            if threading.current_thread() is self._thread:
                return work()
        future: Future[Any] = Future()
        self._queue.put((work, future))
        return future.result()

    def _run(self) -> None:
        while True:
            work, future = self._queue.get()
            try:
                future.set_result(work())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                future.set_exception(exc)


_SPAWNER = _Spawner()


def spawn(
    args: Sequence[str | Path],
    *,
    death_signal: int = signal.SIGKILL,
    user: int | None = None,
    group: int | None = None,
    **popen: Any,
) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(args, **popen)`` whose process dies with ``death_signal`` when this one ends.

    ``user``/``group`` (numeric, no passwd entry needed) run it as another user with no supplementary
    groups; that needs root. ``preexec_fn`` is reserved (it sets the parent-death signal).
    """
    if "preexec_fn" in popen:
        raise TypeError("spawn() sets preexec_fn itself")
    if user is not None:
        popen.update(user=user, group=group if group is not None else user, extra_groups=[])
    link = _death_link(death_signal, os.getpid())

    def start() -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = subprocess.Popen(args, preexec_fn=link, **popen)  # noqa: PLW1509 - see the module docstring
        with _children_lock:
            _children[process] = bool(popen.get("start_new_session"))
            _spawned.append((process.pid, _start_time(process.pid), bool(popen.get("start_new_session"))))
        return process

    process: subprocess.Popen[bytes] = _SPAWNER.call(start)
    return process


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``, read from ``/proc`` (Linux); [] elsewhere."""
    members: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and fields[0] != "Z" and int(fields[3]) == sid:
            members.append(int(entry.name))
    return sorted(members)


def kill_tree(process: subprocess.Popen[Any]) -> None:
    """SIGKILL ``process`` and, when it was started in a session of its own, everything left in that
    session (its leader may be gone already); reap it."""
    pid = process.pid
    with _children_lock:
        leads_session = _children.get(process, False)
    for member in {pid, *(session_members(pid) if leads_session else [])}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(member, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.wait(5)


def running_children() -> list[subprocess.Popen[Any]]:
    with _children_lock:
        children = list(_children)
    return [p for p in children if p.poll() is None or (_children.get(p) and session_members(p.pid))]


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[19])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :][:1] != "Z"


def leftovers() -> list[int]:
    """Processes this process spawned (and, for session leaders, their sessions) that still run."""
    with _children_lock:
        spawned = list(_spawned)
    found: set[int] = set()
    for pid, started, session in spawned:
        if _alive(pid) and (started is None or _start_time(pid) == started):
            found.add(pid)
        if session:
            found.update(session_members(pid))
    return sorted(found)


@atexit.register
def _kill_children_at_exit() -> None:
    for process in running_children():
        kill_tree(process)
