"""Run a staged Lambda image (:mod:`mdk.local.dockerfile`) under the real Lambda Runtime Interface Emulator.

The emulator binary is the one AWS SAM CLI ships (``samcli/local/rapid/aws-lambda-rie-<arch>`` in the
``aws-sam-cli`` wheel); :func:`ensure_rie` fetches it with pip, checks its pinned sha256 and caches it.

What the emulator does, measured with aws-sam-cli 1.170.0:

* It starts the runtime **lazily**: until the first invocation only the emulator process exists (it logs
  ``exec '<python>' (cwd=..., handler=...)`` at start, but forks nothing). The first invoke logs
  ``INIT START(type: on-demand, phase: init)``, execs the runtime, and answers once the handler returned.
  So "process start to first response" (:attr:`LambdaProcess.first_response_s`) covers emulator start,
  runtime start, module import (init) and the first invocation, and the emulator's init figure covers
  runtime start plus the handler module's import.
* Its own log lines (stderr) look like::

      29 Nov 2026 11:55:02,152 [INFO] (rapid) INIT START(type: on-demand, phase: init)
      29 Nov 2026 11:55:02,221 [INFO] (rapid) INIT RTDONE(status: success)
      29 Nov 2026 11:55:02,221 [INFO] (rapid) INIT REPORT(durationMs: 68.743000)
      29 Nov 2026 11:55:02,221 [INFO] (rapid) INVOKE START(requestId: ff2a0770-...)
      29 Nov 2026 11:55:02,222 [INFO] (rapid) INVOKE RTDONE(status: success, produced bytes: 0,
      duration: 1.107000ms)

  and on stdout, per invocation (REPORT is one line; <TAB> stands for a tab)::

      START RequestId: ff2a0770-... Version: $LATEST
      END RequestId: ff2a0770-...
      REPORT RequestId: ff2a0770-...<TAB>Init Duration: 0.30 ms<TAB>Duration: 70.17 ms<TAB>
        Billed Duration: 71 ms<TAB>Memory Size: 3008 MB<TAB>Max Memory Used: 3008 MB<TAB>

  Pitfall: in the REPORT line, ``Init Duration`` (first invocation only) is *not* the init time: the
  emulator starts init asynchronously and reports only how long it took to start it (well under 1 ms),
  while ``Duration`` of the first invocation *includes* the init. The real init duration is the
  ``INIT REPORT(durationMs: ...)`` line, which :meth:`LambdaProcess.init_duration_ms` returns. Memory
  figures are the configured size, not a measurement.
* A handler that raises still gets HTTP 200, with Lambda's error payload (``errorMessage``,
  ``errorType``, ``requestId``, ``stackTrace``) and no ``X-Amz-Function-Error`` header;
  :meth:`LambdaProcess.invoke` turns that payload into :class:`FunctionError`. A failed init (e.g. an
  import error) answers HTTP 502 with the error payload, and the emulator retries init on each later
  invoke (``INIT START(type: on-demand, phase: invoke)``).
* It puts the runtime in a process group of its own (but in its session), and on SIGTERM it SIGKILLs the
  runtime and exits. :meth:`LambdaProcess.stop` therefore starts the emulator in a new session and, after
  stopping it, kills whatever is left in that session, so nothing outlives it.
* Of the environment, it forwards everything it is given to the runtime and adds only
  ``AWS_LAMBDA_RUNTIME_API``, ``_HANDLER``, the credentials and defaults for the function's name
  (``test_function``), version, memory size (3008) and log group/stream. It does not set a region. It
  reads ``AWS_LAMBDA_FUNCTION_TIMEOUT`` (default 300 s) for the invocation timeout. The runtime API
  listens on ``127.0.0.1:9001`` unless ``--runtime-api-address`` says otherwise; we pass a free port so
  several emulators can run at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import weakref
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from mdk.local.dockerfile import StagedImage
from mdk_runtime.spec import file_sha256

#: The aws-sam-cli release whose wheel carries the emulator binaries.
AWS_SAM_CLI_VERSION = "1.170.0"
#: sha256 of ``samcli/local/rapid/aws-lambda-rie-<arch>`` in that wheel; update both with the version.
RIE_SHA256 = {
    "x86_64": "6b1e686e62ab2baf5759c412c4864276ef2a88b094fca53ec070637ccba9b9a5",
    "arm64": "ec2e5d09633d853834c008b1ef264bf834b258a94d551d2b2074966494b39a21",
}
INVOCATIONS_PATH = "/2015-03-31/functions/function/invocations"
LOOPBACK = "127.0.0.1"
#: Fake credentials, as Lambda always sets some: SDK clients made at import time find these, never real ones.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "mdk-local-fake-access-key-id",
    "AWS_SECRET_ACCESS_KEY": "mdk-local-fake-secret-access-key",
    "AWS_SESSION_TOKEN": "mdk-local-fake-session-token",
}

_REPORT = re.compile(
    r"^REPORT RequestId: (?P<request_id>\S+)\s+"
    r"(?:Init Duration: (?P<init>[\d.]+) ms\s+)?"
    r"Duration: (?P<duration>[\d.]+) ms\s+"
    r"Billed Duration: (?P<billed>[\d.]+) ms\s+"
    r"Memory Size: (?P<memory>\d+) MB\s+"
    r"Max Memory Used: (?P<max_memory>\d+) MB",
    re.MULTILINE,
)
_INIT_EVENT = re.compile(
    r"\(rapid\) INIT (?:START\(type: (?P<type>[\w-]+), phase: (?P<phase>\w+)\)"
    r"|RTDONE\(status: (?P<status>\w+)\)"
    r"|REPORT\(durationMs: (?P<duration>[\d.]+)\))"
)


class RieError(Exception):
    """The emulator could not be fetched, started, reached or parsed."""


class InvocationError(RieError):
    """The emulator answered an invocation with an HTTP error (502 when the function's init failed)."""

    def __init__(self, status: int, body: bytes, log_path: Path) -> None:
        super().__init__(
            f"invocation failed with HTTP {status}: {body.decode('utf-8', 'replace')} (log: {log_path})"
        )
        self.status = status
        self.body = body


class FunctionError(RieError):
    """The handler raised: the emulator returned Lambda's error payload."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = dict(payload)
        self.error_type = str(payload.get("errorType"))
        self.error_message = str(payload.get("errorMessage"))


@dataclass(frozen=True)
class InvokeReport:
    """One ``REPORT RequestId: ...`` line (see the module docstring for what its fields mean here)."""

    request_id: str
    duration_ms: float
    billed_duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None


@dataclass(frozen=True)
class InitReport:
    """One ``INIT START`` .. ``INIT REPORT(durationMs: ...)`` sequence of the emulator's log."""

    duration_ms: float
    status: str | None  # from INIT RTDONE: "success" or "error"; None when the emulator skipped init
    phase: str | None  # "init" for the first init, "invoke" for a retry after a failed init


# --------------------------------------------------------------------------------------- the binary


def rie_arch(machine: str | None = None) -> str:
    """The emulator's name for this machine's architecture: ``x86_64`` or ``arm64``."""
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        return "x86_64"
    if machine in ("aarch64", "arm64"):
        return "arm64"
    raise RieError(f"no Lambda Runtime Interface Emulator build for machine {machine!r}")


def ensure_rie(cache_dir: Path, *, python: str = sys.executable) -> Path:
    """The emulator binary for this machine, fetched once into ``cache_dir`` from the aws-sam-cli wheel.

    The binary lands at ``cache_dir/aws-lambda-rie-<version>-<arch>`` atomically (extracted next to it,
    checked against :data:`RIE_SHA256`, then renamed), so concurrent or interrupted calls never leave a
    partial file behind.
    """
    arch = rie_arch()
    cache_dir = cache_dir.absolute()
    final = cache_dir / f"aws-lambda-rie-{AWS_SAM_CLI_VERSION}-{arch}"
    if final.is_file() and os.access(final, os.X_OK) and file_sha256(final) == RIE_SHA256[arch]:
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".tmp-rie-") as tmp:
        download = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "download",
                f"aws-sam-cli=={AWS_SAM_CLI_VERSION}",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-d",
                tmp,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        wheels = sorted(Path(tmp).glob(f"aws_sam_cli-{AWS_SAM_CLI_VERSION}-*.whl"))
        if download.returncode != 0 or len(wheels) != 1:
            tail = "\n".join(download.stdout.splitlines()[-20:])
            raise RieError(f"could not download aws-sam-cli=={AWS_SAM_CLI_VERSION} with pip:\n{tail}")
        member = f"samcli/local/rapid/aws-lambda-rie-{arch}"
        extracted = Path(tmp) / final.name
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(member) as src, extracted.open("wb") as out:
                shutil.copyfileobj(src, out)
        except KeyError:
            raise RieError(f"{wheels[0].name} has no {member}") from None
        actual = file_sha256(extracted)
        if actual != RIE_SHA256[arch]:
            raise RieError(f"{member} of {wheels[0].name} has sha256 {actual}, expected {RIE_SHA256[arch]}")
        extracted.chmod(0o755)
        os.replace(extracted, final)
    return final


# ---------------------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


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


def _kill_session(sid: int) -> None:
    """Last resort, for a LambdaProcess dropped without stop(): SIGKILL everything in its session."""
    for pid in session_members(sid) or [sid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LambdaProcess:
    """A staged image running under ``aws-lambda-rie`` on a free loopback port.

    Use it as a context manager (start and wait until ready, then stop), or call :meth:`start`,
    :meth:`wait_ready` and :meth:`stop` yourself. The emulator's and the function's output go to
    :attr:`log_path` (by default ``<stage>.rie.log`` next to the stage; rewritten by each start).
    """

    def __init__(
        self,
        image: StagedImage,
        rie: Path,
        *,
        python: str = sys.executable,
        log_path: Path | None = None,
        function_name: str = "function",
        memory_mb: int = 3008,
        timeout_s: int = 300,
        region: str = "us-east-1",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.image = image
        # The emulator runs in the task root: relative paths to the binaries would no longer resolve there.
        self.rie = rie.absolute()
        self.python = os.path.abspath(python) if os.sep in python else python
        self.log_path = log_path or image.root.with_name(image.root.name + ".rie.log")
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.region = region
        self.extra_env = dict(env or {})
        self.port = _free_port()
        self.runtime_api_port = _free_port()
        while self.runtime_api_port == self.port:
            self.runtime_api_port = _free_port()
        #: time.monotonic() just before the emulator was spawned.
        self.started_at: float | None = None
        #: Seconds from spawning the emulator to the first invocation's complete response: emulator start,
        #: runtime start and init (lazy, at the first invoke) and the first invocation together.
        self.first_response_s: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[int], LambdaProcess] | None = None

    # --- lifecycle

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{INVOCATIONS_PATH}"

    @property
    def pid(self) -> int:
        """The emulator's pid, which is also its process group and session id."""
        if self._process is None:
            raise RieError("the emulator has not been started")
        return self._process.pid

    @property
    def pgid(self) -> int:
        return self.pid

    def lambda_env(self) -> dict[str, str]:
        """What Lambda sets for a function, as far as a local run can have it (credentials are fake)."""
        today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
        return {
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **FAKE_CREDENTIALS,
        }

    def command(self) -> list[str]:
        return [
            str(self.rie),
            "--runtime-interface-emulator-address",
            f"{LOOPBACK}:{self.port}",
            "--runtime-api-address",
            f"{LOOPBACK}:{self.runtime_api_port}",
            *self.image.command(self.python),
        ]

    def start(self) -> None:
        if self._process is not None:
            raise RieError("the emulator was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")  # one log per run: reports() must not see an earlier run
        env = self.image.process_env({**self.lambda_env(), **self.extra_env})
        self.started_at = time.monotonic()
        try:
            self._process = subprocess.Popen(
                self.command(),
                cwd=self.image.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise RieError(f"cannot start {self.rie}: {exc}") from exc
        # Garbage collection or interpreter exit without stop() still leaves no orphans.
        self._finalizer = weakref.finalize(self, _kill_session, self._process.pid)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the emulator accepts connections; raise RieError if it exits or takes too long."""
        deadline = time.monotonic() + timeout
        while True:
            process = self._process
            if process is None:
                raise RieError("the emulator has not been started")
            if process.poll() is not None:
                raise RieError(f"the emulator exited with {process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RieError(
                        f"the emulator did not listen on {LOOPBACK}:{self.port} within {timeout}s:\n"
                        f"{self.log_tail()}"
                    ) from None
                time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the emulator, SIGKILL it after ``timeout``, then kill anything left in its session.

        Returns the emulator's exit status (None if it was never started).
        """
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # The runtime sits in a process group of its own: sweep the whole session.
        deadline = time.monotonic() + timeout
        while leftovers := session_members(process.pid):
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise RieError(f"processes {leftovers} of the emulator's session survived SIGKILL")
            time.sleep(0.02)
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._log is not None:
            self._log.close()
        return process.returncode

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- invocations

    def invoke_raw(self, event: Any, timeout: float = 60.0) -> tuple[int, bytes]:
        """POST ``event`` as JSON; return the HTTP status and body (proxies are bypassed: loopback only)."""
        request = urllib.request.Request(  # noqa: S310 - the URL is http://127.0.0.1:<port>/... only
            self.url, data=json.dumps(event).encode(), headers={"Content-Type": "application/json"}
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                status, body = int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            raise RieError(f"invocation of {self.url} failed: {exc}\n{self.log_tail()}") from exc
        if self.first_response_s is None and self.started_at is not None:
            self.first_response_s = time.monotonic() - self.started_at
        return status, body

    def invoke(self, event: Mapping[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        """Invoke the function and return its decoded JSON object.

        Raises InvocationError on an HTTP error (e.g. 502 when init failed), FunctionError when the
        handler raised, RieError when the answer is not a JSON object.
        """
        status, body = self.invoke_raw(event, timeout)
        if status != 200:
            raise InvocationError(status, body, self.log_path)
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise RieError(f"the function answered with non-JSON {body[:200]!r}") from exc
        if not isinstance(payload, dict):
            raise RieError(f"the function answered with a JSON {type(payload).__name__}, not an object")
        if {"errorMessage", "errorType", "stackTrace"} <= payload.keys():
            raise FunctionError(payload)
        return payload

    # --- the log

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def reports(self) -> list[InvokeReport]:
        """The REPORT lines printed so far, one per finished invocation."""
        return [
            InvokeReport(
                request_id=m["request_id"],
                duration_ms=float(m["duration"]),
                billed_duration_ms=float(m["billed"]),
                memory_size_mb=int(m["memory"]),
                max_memory_used_mb=int(m["max_memory"]),
                init_duration_ms=float(m["init"]) if m["init"] else None,
            )
            for m in _REPORT.finditer(self.log_text())
        ]

    def init_reports(self) -> list[InitReport]:
        """The runtime inits so far (one, unless init failed and the emulator retried)."""
        reports: list[InitReport] = []
        phase: str | None = None
        status: str | None = None
        for match in _INIT_EVENT.finditer(self.log_text()):
            if match["phase"]:
                phase, status = match["phase"], None
            elif match["status"]:
                status = match["status"]
            else:
                reports.append(InitReport(duration_ms=float(match["duration"]), status=status, phase=phase))
                phase, status = None, None
        return reports

    def init_duration_ms(self) -> float:
        """The first init's duration as the emulator measured it (runtime start to its first ``/next``)."""
        reports = self.init_reports()
        if not reports:
            raise RieError(f"no INIT REPORT in {self.log_path} yet: init runs at the first invocation")
        return reports[0].duration_ms
