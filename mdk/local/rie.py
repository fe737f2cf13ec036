"""Run a staged Lambda image (:mod:`mdk.images.stage`) under the real Lambda Runtime Interface Emulator.

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
import hashlib
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
from typing import IO, Any, Literal, Self

from mdk.images.stage import StagedImage
from mdk.local import processes
from mdk.local.processes import spawn
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

#: Lambda's sandbox user (``sbx_user1051``, uid 993 and gid 990 in Lambda's execution environment). When
#: this process is root, the emulator and the function run as this uid/gid (no passwd entry needed), as
#: "Lambda runs as a default Linux user with least-privileged permissions" ("Create a Lambda function
#: using a container image", https://docs.aws.amazon.com/lambda/latest/dg/images-create.html).
SANDBOX_UID = 993
SANDBOX_GID = 990
#: Lambda's default ephemeral storage (``/tmp``), in MB ("Configure ephemeral storage for Lambda functions",
#: https://docs.aws.amazon.com/lambda/latest/dg/configuration-ephemeral-storage.html): 512 to 10,240.
DEFAULT_EPHEMERAL_MB = 512

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


#: Live processes of a session (re-exported: callers of this module use it to check for leftovers).
session_members = processes.session_members


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


def _kill_session(sid: int, tmp: str | None = None) -> None:
    """Last resort, for a LambdaProcess dropped without stop(): SIGKILL everything in its session."""
    for pid in session_members(sid) or [sid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


def _default_user() -> int | None:
    return SANDBOX_UID if hasattr(os, "geteuid") and os.geteuid() == 0 else None


def grant_search(path: Path) -> None:
    """Let other users traverse (``o+x``, not list) every directory above ``path`` that this user owns.

    The sandbox user must reach the stage, the emulator and the interpreter, which may lie under a 0700
    directory (pytest's ``/tmp/pytest-of-root``). Directories owned by others are left alone.
    """
    uid = os.geteuid()
    for directory in [path, *path.parents] if path.is_dir() else list(path.parents):
        try:
            info = directory.stat()
        except OSError:
            continue
        if info.st_uid == uid and not info.st_mode & 0o001:
            directory.chmod((info.st_mode & 0o7777) | 0o001)


def _readable_by_others(info: os.stat_result, *, directory: bool) -> bool:
    wanted = 0o005 if directory else (0o005 if info.st_mode & 0o100 else 0o004)
    return info.st_mode & wanted == wanted


_PREFIX_PROBE = (
    "import sys, sysconfig; print(sys.base_prefix); print(sysconfig.get_python_version()); "
    "print(sysconfig.get_config_var('LDLIBRARY') or '')"
)


def lambda_base_python(cache_dir: Path, python: str = sys.executable) -> Path:
    """This machine's interpreter laid out as the base image's ``/var/lang``, readable by the sandbox user.

    The interpreter may live where the sandbox user cannot go (pyenv under ``/root``, mode 0700): its
    executable, ``libpython`` and standard library (not its site-packages, nor its test suite) are
    hard-linked (copied across file systems, or where a file is not world-readable) into
    ``cache_dir/lambda-lang-<version>-<key>/``, once; returns ``<that>/bin/pythonX.Y``. The function's
    environment puts ``<that>/lib`` first on ``LD_LIBRARY_PATH``, as Lambda puts ``/var/lang/lib``.
    """
    executable = Path(os.path.realpath(python))
    probe = subprocess.run(
        [str(executable), "-S", "-c", _PREFIX_PROBE], capture_output=True, text=True, check=True
    )
    prefix_text, version, ldlibrary = probe.stdout.splitlines()[:3]
    prefix = Path(prefix_text)
    name = f"python{version}"
    info = executable.stat()
    key = hashlib.sha256(f"{prefix}|{executable}|{info.st_size}|{info.st_mtime_ns}".encode()).hexdigest()[:16]
    cache_dir = cache_dir.absolute()
    final = cache_dir / f"lambda-lang-{version}-{key}"
    if (final / "bin" / name).is_file():
        return final / "bin" / name
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-lang-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "bin").mkdir(parents=True)
        _place(executable, tmp / "bin" / name)
        (tmp / "lib").mkdir()
        for library in sorted((prefix / "lib").glob(f"{ldlibrary}*" if ldlibrary else "libpython*")):
            if library.is_file():
                _place(library.resolve(), tmp / "lib" / library.name)
        stdlib = prefix / "lib" / name
        skip = {stdlib / "site-packages", stdlib / "test"}
        for directory, dirnames, filenames in os.walk(stdlib):
            base = Path(directory)
            dirnames[:] = [d for d in dirnames if base / d not in skip]
            out = tmp / "lib" / name / base.relative_to(stdlib)
            out.mkdir(parents=True, exist_ok=True)
            out.chmod(0o755)
            for filename in filenames:
                source = base / filename
                if source.is_symlink():
                    (out / filename).symlink_to(os.readlink(source))
                elif source.is_file():
                    _place(source, out / filename)
        for made in (tmp, tmp / "bin", tmp / "lib"):
            made.chmod(0o755)
        try:
            tmp.rename(final)
        except OSError:
            if not (final / "bin" / name).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final / "bin" / name


def _place(source: Path, dest: Path) -> None:
    """Hard-link ``source`` to ``dest`` when others can read it (and link across); else copy it 0644/0755."""
    info = source.stat()
    if _readable_by_others(info, directory=False):
        try:
            os.link(source, dest)
            return
        except OSError:
            pass
    shutil.copyfile(source, dest)
    dest.chmod(0o755 if info.st_mode & 0o100 else 0o644)


class LambdaProcess:
    """A staged image running under ``aws-lambda-rie`` on a free loopback port, as Lambda runs it.

    Use it as a context manager (start and wait until ready, then stop), or call :meth:`start`,
    :meth:`wait_ready` and :meth:`stop` yourself. The emulator's and the function's output go to
    :attr:`log_path` (by default ``<stage>.rie.log`` next to the stage; rewritten by each start).

    The execution environment, as far as one machine can have it:

    * **an unprivileged user**: when this process is root, the emulator and the function run as
      :data:`SANDBOX_UID`/:data:`SANDBOX_GID` with no supplementary groups (``user``; None runs them as this
      process's user, the only choice when it is not root). The interpreter is then this machine's,
      laid out as the base image's ``/var/lang`` (:func:`lambda_base_python`), and every directory above
      the stage, the emulator and the interpreter is made traversable (:func:`grant_search`);
    * **a read-only task root**: the stage belongs to this process's user (0755/0644 when the build
      context was world-readable, as a Docker build keeps the context's modes), so the function can read
      it and cannot write it; a file the context had at 0600 cannot be read, and init fails as on AWS;
    * **a writable /tmp of its own**: ``TMPDIR`` names a fresh 0700 directory owned by the sandbox user,
      removed at :meth:`stop`. Lambda's ephemeral size (``ephemeral_storage_mb``) is passed on but **not
      enforced** (a size limit needs a mount of its own: tmpfs or a loop device, which needs privileges
      CI does not have); :meth:`tmp_usage_bytes` measures what the function left there;
    * **Lambda's environment variables** (:meth:`lambda_env`);
    * **a parent-death signal**: the emulator gets SIGTERM (on which it kills the runtime) when this
      process ends, however it ends (:func:`mdk.local.processes.spawn`).
    """

    def __init__(
        self,
        image: StagedImage,
        rie: Path,
        *,
        python: str | None = None,
        log_path: Path | None = None,
        function_name: str = "function",
        memory_mb: int = 3008,
        timeout_s: int = 300,
        region: str = "us-east-1",
        env: Mapping[str, str] | None = None,
        user: int | Literal["default"] | None = "default",
        ephemeral_storage_mb: int = DEFAULT_EPHEMERAL_MB,
        version: str = "$LATEST",
    ) -> None:
        self.image = image
        # The emulator runs in the task root: relative paths to the binaries would no longer resolve there.
        self.rie = rie.absolute()
        self.user = _default_user() if user == "default" else user
        if python is None:
            # As root, the function runs as the sandbox user: it needs an interpreter it can reach.
            python = sys.executable if self.user is None else str(lambda_base_python(self.rie.parent))
        self.python = os.path.abspath(python) if os.sep in python else python
        self.log_path = log_path or image.root.with_name(image.root.name + ".rie.log")
        self.function_name = function_name
        self.memory_mb = memory_mb
        self.timeout_s = timeout_s
        self.region = region
        self.version = version
        self.ephemeral_storage_mb = ephemeral_storage_mb
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
        #: The sandbox's /tmp (TMPDIR), created by start(), removed by stop().
        self.tmp: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[int, str | None], LambdaProcess] | None = None

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

    def returncode(self) -> int | None:
        """The emulator's exit status once it ended (negative: the signal that killed it), else None."""
        return None if self._process is None else self._process.poll()

    def alive(self) -> bool:
        """Whether the emulator is running (False before start, after stop, or once it died)."""
        return self._process is not None and self._process.poll() is None

    def lambda_env(self) -> dict[str, str]:
        """What Lambda sets for a function, as far as a local run can have it (credentials are fake).

        "Defined runtime environment variables" in "Working with Lambda environment variables",
        https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
        (``LAMBDA_TASK_ROOT``, ``LAMBDA_RUNTIME_DIR``, ``LANG``, ``TZ`` come from the staged image, as they
        come from the base image's ENV; ``PATH`` and ``LD_LIBRARY_PATH`` are completed by :meth:`start`).
        """
        today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
        python = self.image.base_python or f"{sys.version_info.major}.{sys.version_info.minor}"
        return {
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(self.timeout_s),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"{today}/[{self.version}]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_python{'.'.join(python.split('.')[:2])}",
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

    def environment(self) -> dict[str, str]:
        """The emulator's (and so the function's) whole environment, built from scratch."""
        env = self.image.process_env({**self.lambda_env(), **self.extra_env})
        lang = Path(self.python).parent.parent
        if self.user is not None and (lang / "lib").is_dir():
            # The base image's order: /var/lang/lib first, then the system's, then the runtime and task.
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                [str(lang / "lib"), "/lib64", "/usr/lib64", env["LD_LIBRARY_PATH"]]
            )
            env["PATH"] = os.pathsep.join([str(lang / "bin"), env["PATH"]])
        if self.tmp is not None:
            env["TMPDIR"] = str(self.tmp)
        env["MDK_LOCAL_EPHEMERAL_STORAGE_MB"] = str(self.ephemeral_storage_mb)
        return env

    def start(self) -> None:
        if self._process is not None:
            raise RieError("the emulator was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="mdk-lambda-tmp-"))
        if self.user is not None:
            os.chown(self.tmp, self.user, SANDBOX_GID)
            for path in (self.rie, Path(self.python), self.image.root, self.tmp):
                grant_search(path)
        self._log = self.log_path.open("wb")  # one log per run: reports() must not see an earlier run
        env = self.environment()
        self.started_at = time.monotonic()
        try:
            self._process = spawn(
                self.command(),
                cwd=self.image.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                start_new_session=True,
                death_signal=signal.SIGTERM,  # the emulator SIGKILLs the runtime, then exits
                user=self.user,
                group=None if self.user is None else SANDBOX_GID,
            )
        except OSError as exc:
            self._log.close()
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise RieError(f"cannot start {self.rie}: {exc}") from exc
        # Garbage collection or interpreter exit without stop() still leaves no orphans.
        self._finalizer = weakref.finalize(self, _kill_session, self._process.pid, str(self.tmp))

    def tmp_usage_bytes(self) -> int:
        """Bytes the function keeps in its /tmp now (Lambda's ephemeral storage; not enforced here)."""
        if self.tmp is None:
            return 0
        total = 0
        for directory, _dirs, files in os.walk(self.tmp):
            for name in files:
                with contextlib.suppress(OSError):
                    total += (Path(directory) / name).lstat().st_size
        return total

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
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
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
