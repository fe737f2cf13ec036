"""Replay a Lambda image's Dockerfile into a staging directory, without a Docker engine.

The staging directory plays the image's root filesystem: ``COPY x /var/task/`` writes
``<stage>/var/task/x``. The base image's ``LAMBDA_TASK_ROOT`` and ``LAMBDA_RUNTIME_DIR`` point at
``<stage>/var/task`` and ``<stage>/var/runtime``, so ``${LAMBDA_TASK_ROOT}/model`` expands to the staged
path, and ENV values that are literal paths under ``/var/task`` or ``/var/runtime`` are staged too.

Supported subset (anything else raises :class:`DockerfileError` naming file, line and instruction):

* comments, blank lines, ``\\`` continuations; parser directives other than ``escape``;
* ``FROM public.ecr.aws/lambda/python:<tag>`` (one stage; ``--platform`` is recorded, not emulated);
* ``ARG name[=default] ...`` and ``ENV k=v ...`` (or the legacy ``ENV k v``), ``WORKDIR``;
* ``COPY [--chown=..] [--chmod=octal] [--link] src... dest`` (shell or JSON form, ``--from`` is rejected),
  with Docker's semantics: a directory source copies its contents, several sources (or a wildcard)
  need a directory destination ending in ``/``, ``.dockerignore`` at the context root filters sources;
* ``RUN`` only for ``pip install ...`` / ``python -m pip install ...`` with ``--target`` (shell syntax such
  as ``&&``, pipes or redirections is rejected: replay runs exactly one pip command);
* ``CMD`` / ``ENTRYPOINT`` in JSON-array form.

Variables expand like Docker (``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR:+word}``; ENV wins over
ARG), with one deliberate difference: a variable that is not set is an error naming it, where Docker
would silently expand it to an empty string.

``RUN pip install`` runs for real with ``<python> -m pip`` and is cached like a Docker layer: the key is
the sha256 of the command (with staged paths written back as image paths, so the key does not depend on
where the stage lies), the working directory, the contents of every file or directory of the stage the
command names (requirements and constraints files, including the ones they include with ``-r``/``-c``,
local wheels and find-links directories), ``PIP_*`` variables from ARG/ENV, and the interpreter (version,
ABI, platform, pip version). The install goes into ``<cache_dir>/.tmp-*`` and is renamed to
``<cache_dir>/<key>`` only once pip succeeded, so a killed run never leaves a half-written layer; the
layer is then hard-linked (or copied, across file systems) into the stage. Staged files may share inodes
with the cache: treat the stage as read-only, as ``/var/task`` is in Lambda (replay itself always
unlinks before it writes). The host's pip configuration (index, certificates) still applies to pip.

The base image's runtime client, ``awslambdaric`` (the version installed in this environment), is
installed into ``<stage>/var/runtime`` the same way, and so is the AWS SDK the base image carries:
``public.ecr.aws/lambda/python`` ships boto3 and botocore ("The Python runtime includes the AWS SDK for
Python (Boto3)", "Building Lambda functions with Python",
https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html): :data:`BASE_IMAGE_SDK`, at the versions
this environment has installed, with ``--no-deps`` (exactly those distributions). It sits after the task
root on ``PYTHONPATH``, so a function that bundles its own boto3 gets its own, as in Lambda, and code that
imports boto3 only when it is there (the shadow mirror, Powertools' parameters) runs as it would on AWS.

Files are written as a Docker build writes them whatever this process's umask: directories COPY creates
are 0755, and pip runs with umask 022, as a ``RUN`` step does in the image.

Isolation: :meth:`StagedImage.command` runs ``<python> -S -m awslambdaric <handler>`` with
``PYTHONPATH=<task root>:<runtime dir>`` and an environment built from scratch. ``-S`` skips the ``site``
module, so neither the virtualenv's nor the base interpreter's site-packages (which here holds numpy,
boto3 and more) is on ``sys.path``: only the standard library, the task root and the runtime dir are, and
a dependency missing from the image's requirements fails to import as it would in the image. This was
checked: ``-S`` keeps the standard library importable (json, ssl, sqlite3, ctypes, decimal, zlib,
hashlib, logging) and ``awslambdaric``'s C extension loads from ``PYTHONPATH``. ``-I`` would be the wrong
tool (it ignores ``PYTHONPATH``) and ``-s`` only drops the user site. What ``-S`` also drops: the
``exit``/``quit``/``help`` builtins and ``.pth`` processing, neither of which applies to ``/var/task`` or
``/var/runtime`` in Lambda either (they are ``PYTHONPATH`` entries there too, not site directories).

Known differences from the real image: the interpreter is the host's, not the image's (the image's
Python version is :attr:`StagedImage.base_python`), so wheels are resolved for the host; the runtime dir
holds ``awslambdaric`` and its dependencies plus the SDK; ``USER`` and ``--chown`` are not emulated (every
staged file belongs to the user replaying; :class:`mdk.local.rie.LambdaProcess` runs the function as
another user, so the stage is read-only to it, as ``/var/task`` is in Lambda).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import posixpath
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

IMAGE_TASK_ROOT = "/var/task"
IMAGE_RUNTIME_DIR = "/var/runtime"
BASE_IMAGE_REPOSITORY = "public.ecr.aws/lambda/python"
RUNTIME_CLIENT = "awslambdaric"
#: What the base image carries besides the runtime client: the AWS SDK for Python and its dependencies.
BASE_IMAGE_SDK = ("boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six", "urllib3")
BASE_ENTRYPOINT = "/lambda-entrypoint.sh"

#: Bumped when the layout of cache keys changes, so old layers are not reused by mistake.
_CACHE_FORMAT = 1
_SUPPORTED = ("FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "CMD", "ENTRYPOINT")
_KNOWN_UNSUPPORTED = frozenset(
    {
        "ADD",
        "EXPOSE",
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
    }
)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIRECTIVE = re.compile(r"#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*$")
_PYTHON_EXE = re.compile(r"python(3(\.\d+)?)?")
_PIP_EXE = re.compile(r"pip(3(\.\d+)?)?")
_SHELL_OPERATORS = frozenset(";&|<>`()")
_PIP_PATH_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint"})
_PIP_FORBIDDEN = frozenset({"--user", "--prefix", "--root", "--home"})

_PROBE = (
    "import json, platform, sys, sysconfig\n"
    "from pip import __version__ as pip_version\n"
    "print(json.dumps({'version': platform.python_version(), 'implementation': sys.implementation.name,"
    " 'soabi': sysconfig.get_config_var('SOABI'), 'platform': sysconfig.get_platform(),"
    " 'machine': platform.machine(), 'libc': list(platform.libc_ver()), 'pip': pip_version}))\n"
)


class ReplayError(Exception):
    """Replay cannot proceed for a reason outside the Dockerfile (stage, environment, interpreter)."""


class DockerfileError(ReplayError):
    """A Dockerfile instruction cannot be parsed or replayed; the message names file, line and instruction."""

    def __init__(self, path: Path, line: int | None, instruction: str, message: str) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {instruction}: {message}")
        self.path = path
        self.line = line
        self.instruction = instruction
        self.detail = message


class _ExpansionError(Exception):
    """A variable or quoting problem, wrapped into a DockerfileError by the caller."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Instruction:
    """One logical Dockerfile instruction (continuation lines joined)."""

    line: int
    keyword: str
    text: str


@dataclass(frozen=True)
class StagedImage:
    """A replayed image: its staged root filesystem and how to run its CMD on this machine."""

    root: Path
    task_root: Path
    runtime_dir: Path
    env: dict[str, str]
    cmd: list[str]
    workdir: Path
    entrypoint: list[str] | None = None
    base_image: str = f"{BASE_IMAGE_REPOSITORY}:latest"
    base_python: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)

    def command(self, python: str = sys.executable) -> list[str]:
        """The argv to exec (under the emulator): ``python -S -m awslambdaric <handler>`` for the base image.

        ``-S`` keeps every site-packages directory off ``sys.path`` (see the module docstring).
        """
        if self.entrypoint is None or self.entrypoint == [BASE_ENTRYPOINT]:
            if not self.cmd:
                raise ReplayError(f"image staged at {self.root} has no CMD: the base image needs the handler")
            return [python, "-S", "-m", RUNTIME_CLIENT, *self.cmd]
        # A python ENTRYPOINT (checked by replay): run it with our interpreter, isolated the same way.
        return [python, "-S", *self.entrypoint[1:], *self.cmd]

    def process_env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment to exec with: built from scratch (nothing of this process leaks in), then ENV, then
        ``extra``.

        ``PYTHONPATH`` is the task root then the runtime dir, as in the base image; bytecode is not written
        (``/var/task`` is read-only in Lambda, and the stage may share files with the layer cache).
        """
        library_path = [self.runtime_dir, self.runtime_dir / "lib", self.task_root, self.task_root / "lib"]
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "LD_LIBRARY_PATH": os.pathsep.join(str(p) for p in library_path),
            "PYTHONPATH": os.pathsep.join([str(self.task_root), str(self.runtime_dir)]),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "LAMBDA_RUNTIME_DIR": str(self.runtime_dir),
        }
        env.update(self.env)
        if extra:
            env.update(extra)
        return env


# --------------------------------------------------------------------------------------------- parsing


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Split a Dockerfile into instructions; unknown or unsupported instructions raise DockerfileError."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ReplayError(f"cannot read Dockerfile {path}: {exc}") from exc

    instructions: list[Instruction] = []
    in_header = True
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        stripped = raw.strip()
        if in_header and not pending:
            directive = _DIRECTIVE.match(stripped)
            if directive:
                name, value = directive.group(1).lower(), directive.group(2)
                if name == "escape" and value != "\\":
                    raise DockerfileError(
                        path, number, "escape", "only the default escape character \\ is supported"
                    )
                continue
            in_header = False
        if pending and (not stripped or stripped.startswith("#")):
            continue  # Docker drops comments and empty lines inside a continuation
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        continued = re.search(r"\\[ \t]*$", raw)
        pending.append(raw[: continued.start()] if continued else raw)
        if continued:
            continue
        instructions.append(_instruction(path, start, "".join(pending)))
        pending = []
    if pending:
        instructions.append(_instruction(path, start, "".join(pending)))
    return instructions


def _instruction(path: Path, line: int, text: str) -> Instruction:
    match = re.match(r"\s*(\S+)\s*(.*?)\s*$", text, re.DOTALL)
    if match is None:  # pragma: no cover - the caller never passes blank text
        raise DockerfileError(path, line, "?", "empty instruction")
    keyword = match.group(1).upper()
    if keyword not in _SUPPORTED:
        supported = ", ".join(_SUPPORTED)
        kind = "unsupported" if keyword in _KNOWN_UNSUPPORTED else "unknown"
        raise DockerfileError(path, line, keyword, f"{kind} instruction: replay supports only {supported}")
    return Instruction(line=line, keyword=keyword, text=match.group(2))


# ------------------------------------------------------------------------------------------- expansion

Lookup = Callable[[str], str | None]


def _expand(
    text: str, lookup: Lookup, *, split: bool, quotes: bool = True, run_syntax: bool = False
) -> list[str]:
    """Docker's word processing: quotes, backslash escapes and ``$`` substitution; ``split`` splits words.

    ``run_syntax`` rejects unquoted shell syntax (RUN replays one command, not a shell script).
    """
    return _Words(text, lookup, split=split, quotes=quotes, run_syntax=run_syntax).process()


class _Words:
    """The state machine behind :func:`_expand`: one method per quoting state."""

    def __init__(self, text: str, lookup: Lookup, *, split: bool, quotes: bool, run_syntax: bool) -> None:
        self.text, self.lookup = text, lookup
        self.split, self.quotes, self.run_syntax = split, quotes, run_syntax
        self.words: list[str] = []
        self.current: list[str] = []
        self.has_word = False
        self.quote: str | None = None
        self.i = 0

    def process(self) -> list[str]:
        while self.i < len(self.text):
            if self.quote == "'":
                self.single_quoted(self.text[self.i])
            elif self.quote == '"':
                self.double_quoted(self.text[self.i])
            else:
                self.unquoted(self.text[self.i])
        if self.quote is not None:
            raise _ExpansionError(f"unterminated {self.quote} quote")
        self.flush()
        return self.words

    def flush(self) -> None:
        if self.has_word:
            self.words.append("".join(self.current))
        self.current, self.has_word = [], False

    def dollar(self) -> str:
        value, self.i = _dollar(self.text, self.i, self.lookup, run_syntax=self.run_syntax)
        return value

    def single_quoted(self, ch: str) -> None:
        if ch == "'":
            self.quote = None
        else:
            self.current.append(ch)
        self.i += 1

    def double_quoted(self, ch: str) -> None:
        nxt = self.text[self.i + 1 : self.i + 2]
        if ch == '"':
            self.quote = None
            self.i += 1
        elif ch == "\\" and nxt and nxt in '"$\\`':
            self.current.append(nxt)
            self.i += 2
        elif ch == "$":
            self.current.append(self.dollar())
        elif ch == "`" and self.run_syntax:
            raise _ExpansionError("command substitution (`...`) is shell syntax and cannot be replayed")
        else:
            self.current.append(ch)
            self.i += 1

    def unquoted(self, ch: str) -> None:
        if self.split and ch in " \t\r\n":
            self.flush()
            self.i += 1
        elif self.quotes and ch in "'\"":
            self.quote, self.has_word = ch, True
            self.i += 1
        elif self.quotes and ch == "\\":
            self.current.append(self.text[self.i + 1] if self.i + 1 < len(self.text) else ch)
            self.has_word = True
            self.i += 2
        elif self.run_syntax and ch in _SHELL_OPERATORS:
            raise _ExpansionError(
                f"shell syntax {ch!r} cannot be replayed: RUN must be a single pip install command "
                "(quote version specifiers such as 'numpy>=2')"
            )
        elif ch == "$":
            value = self.dollar()
            if not self.split:
                self.current.append(value)
                self.has_word = True
                return
            # An unquoted expansion is split into words, as the shell does; an empty one adds no word.
            for k, piece in enumerate(re.split(r"[ \t\r\n]+", value)):
                if k:
                    self.flush()
                if piece:
                    self.current.append(piece)
                    self.has_word = True
        else:
            self.current.append(ch)
            self.has_word = True
            self.i += 1


def _dollar(text: str, i: int, lookup: Lookup, *, run_syntax: bool) -> tuple[str, int]:
    """Expand the ``$`` at ``text[i]``; return the value and the index after the reference."""
    nxt = text[i + 1] if i + 1 < len(text) else ""
    if nxt == "{":
        depth, j = 1, i + 2
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:
            raise _ExpansionError(f"unterminated ${{ in {text[i:]!r}")
        body = text[i + 2 : j - 1]
        name_match = _NAME.match(body)
        if name_match is None:
            raise _ExpansionError(f"bad substitution ${{{body}}}")
        name, rest = name_match.group(0), body[name_match.end() :]
        value = lookup(name)
        if rest == "":
            return _required(name, value), j
        for operator in (":-", ":+", "-", "+"):
            if rest.startswith(operator):
                word = " ".join(_expand(rest[len(operator) :], lookup, split=False, quotes=False))
                is_set = value is not None and (value != "" or ":" not in operator)
                if operator.endswith("-"):
                    return (value if is_set and value is not None else word), j
                return (word if is_set else ""), j
        raise _ExpansionError(f"unsupported substitution ${{{body}}} (replay supports :- and :+)")
    if nxt == "(" and run_syntax:
        raise _ExpansionError("command substitution $(...) is shell syntax and cannot be replayed")
    name_match = _NAME.match(text, i + 1)
    if name_match is None:
        return "$", i + 1
    return _required(name_match.group(0), lookup(name_match.group(0))), name_match.end()


def _platform_args() -> dict[str, str]:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    values = {"PLATFORM": f"linux/{arch}", "OS": "linux", "ARCH": arch}
    return {prefix + key: value for prefix in ("TARGET", "BUILD") for key, value in values.items()}


def _required(name: str, value: str | None) -> str:
    if value is None:
        raise _ExpansionError(f"variable {name} is not set", name)
    return value


class _Variables:
    """ARG and ENV state while replaying; ENV wins over ARG, as in Docker."""

    def __init__(self, build_args: Mapping[str, str]) -> None:
        self.build_args = dict(build_args)
        # Docker predefines the platform ARGs in the global scope (this machine's platform, here).
        self.global_args: dict[str, str | None] = dict(_platform_args())
        self.args: dict[str, str | None] = {}
        self.env: dict[str, str] = {}
        self.consumed: set[str] = set()

    def lookup(self, name: str) -> str | None:
        """The value ``$name`` expands to after FROM, or None when it is not set."""
        if name in self.env:
            return self.env[name]
        return self.args.get(name)

    def lookup_global(self, name: str) -> str | None:
        """The value ``$name`` expands to in FROM (only ARGs declared before FROM are visible)."""
        return self.global_args.get(name)

    def unset_message(self, name: str) -> str:
        if name in self.args:
            return f"ARG {name} is not set: pass it in build_args or give it a default (ARG {name}=...)"
        if name in self.global_args:
            return (
                f"ARG {name} is declared before FROM only: declare it again (ARG {name}) after FROM to use it"
            )
        return f"variable {name} is not set: no ARG or ENV defines it"

    def declare(self, name: str, default: str | None, *, before_from: bool) -> None:
        self.consumed.add(name)
        if before_from:
            self.global_args[name] = self.build_args.get(name, default)
        elif name in self.build_args:
            self.args[name] = self.build_args[name]
        elif default is not None:
            self.args[name] = default
        else:
            self.args[name] = self.global_args.get(name)

    def run_env(self) -> dict[str, str]:
        values = {k: v for k, v in self.args.items() if v is not None}
        values.update(self.env)
        return values


# ----------------------------------------------------------------------------------------- dockerignore


class _IgnorePattern:
    def __init__(self, pattern: str, *, exclusion: bool) -> None:
        self.pattern = pattern
        self.exclusion = exclusion
        self.regex = re.compile(_pattern_regex(pattern))

    def matches(self, rel: str) -> bool:
        if self.regex.match(rel):
            return True
        parts = rel.split("/")
        return any(self.regex.match("/".join(parts[:k])) for k in range(1, len(parts)))


def _pattern_regex(pattern: str) -> str:
    """Moby's patternmatcher translation: ``*`` and ``?`` stay within a path segment, ``**`` spans them."""
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern[i + 1 : i + 2] == "*":
                i += 2
                if pattern[i : i + 1] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 1
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                out.append("[" + body + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


class DockerIgnore:
    """The ``.dockerignore`` rules of a build context: last matching pattern wins, ``!`` re-includes."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns: list[_IgnorePattern] = []
        for raw in patterns:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
            cleaned = posixpath.normpath(line).lstrip("/")
            if cleaned in ("", "."):
                continue
            self.patterns.append(_IgnorePattern(cleaned, exclusion=exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    @classmethod
    def load(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls(path.read_text(encoding="utf-8").splitlines() if path.is_file() else [])

    def excluded(self, rel: str) -> bool:
        """Whether the context-relative POSIX path ``rel`` is left out of the build context."""
        verdict = False
        for pattern in self.patterns:
            if pattern.matches(rel):
                verdict = not pattern.exclusion
        return verdict


# -------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Copy:
    instruction: Instruction
    sources: list[str]
    dest: str  # image path; a trailing "/" marks a directory
    chmod: int | None


@dataclass(frozen=True)
class _Run:
    instruction: Instruction
    tokens: list[str]  # image view, from "install" on
    target_index: int
    target_prefix: str  # "" when the value is a token of its own, else "--target=" or "-t"
    target: str  # image path
    workdir: str
    pip_env: dict[str, str]


@dataclass(frozen=True)
class _Compile:
    """``RUN python -m compileall ...``: bytecode for copied sources, so cold starts do not compile them."""

    instruction: Instruction
    args: list[str]  # after "compileall"; paths are image paths
    workdir: str


@dataclass(frozen=True)
class _Workdir:
    instruction: Instruction
    path: str


_Step = _Copy | _Run | _Compile | _Workdir


def _json_list(text: str) -> list[str] | None:
    """The JSON (exec) form of an instruction's arguments, or None when ``text`` is not a list of strings."""
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return [str(v) for v in value]


class _Replay:
    """Plans a Dockerfile (pure, so every error surfaces before pip runs), then executes it into a stage."""

    def __init__(self, dockerfile: Path, context: Path, stage: Path, build_args: Mapping[str, str]) -> None:
        self.path = dockerfile
        self.context = context
        self.stage = stage
        self.vars = _Variables(build_args)
        self.workdir = "/"
        self.cmd: list[str] = []
        self.entrypoint: list[str] | None = None
        self.base_image: str | None = None
        self.from_line: int | None = None
        self.base_python: str | None = None
        self.steps: list[_Step] = []
        self._stage_prefix = re.compile(re.escape(str(stage)) + r"(?=/|:|$)")

    # --- paths between the image's view and the stage

    def error(self, instruction: Instruction, message: str) -> DockerfileError:
        return DockerfileError(self.path, instruction.line, instruction.keyword, message)

    def unstage(self, value: str) -> str:
        """Write staged paths inside ``value`` back as image paths (``<stage>/var/task`` -> ``/var/task``)."""

        def replace(match: re.Match[str]) -> str:
            return "" if value[match.end() : match.end() + 1] == "/" else "/"

        return self._stage_prefix.sub(replace, value)

    def image_path(self, value: str) -> str:
        """An absolute, normalised image path for ``value`` (relative paths start at WORKDIR)."""
        value = self.unstage(value)
        joined = value if value.startswith("/") else posixpath.join(self.workdir, value)
        return posixpath.normpath("/" + joined.lstrip("/"))

    def staged(self, image_path: str) -> Path:
        rel = posixpath.normpath("/" + image_path).lstrip("/")
        return self.stage / rel if rel else self.stage

    def stage_token(self, token: str) -> str:
        """Point an image path inside a pip argument at the stage (the image's filesystem is the stage)."""
        token = re.sub(r"file://(/[^\s]*)", lambda m: "file://" + str(self.staged(m.group(1))), token)
        if token.startswith("/"):
            return str(self.staged(token))
        option = re.match(r"(--[A-Za-z0-9-]+=|-[A-Za-z])(/.*)$", token)
        if option:
            return option.group(1) + str(self.staged(option.group(2)))
        return token

    # --- planning

    def expansion_error(self, instruction: Instruction, exc: _ExpansionError) -> DockerfileError:
        return self.error(instruction, self.vars.unset_message(exc.name) if exc.name else str(exc))

    def words(self, instruction: Instruction, text: str, *, run_syntax: bool = False) -> list[str]:
        lookup = self.vars.lookup if self.base_image is not None else self.vars.lookup_global
        try:
            return _expand(text, lookup, split=True, run_syntax=run_syntax)
        except _ExpansionError as exc:
            raise self.expansion_error(instruction, exc) from None

    def plan(self, instructions: Sequence[Instruction]) -> None:
        handlers: dict[str, Callable[[Instruction], None]] = {
            "FROM": self.plan_from,
            "ARG": self.plan_arg,
            "ENV": self.plan_env,
            "WORKDIR": self.plan_workdir,
            "COPY": self.plan_copy,
            "RUN": self.plan_run,
            "CMD": self.plan_cmd,
            "ENTRYPOINT": self.plan_entrypoint,
        }
        for instruction in instructions:
            if instruction.keyword not in ("FROM", "ARG") and self.base_image is None:
                raise self.error(instruction, "must come after FROM")
            handlers[instruction.keyword](instruction)
        if self.base_image is None:
            raise DockerfileError(self.path, None, "FROM", "no FROM instruction")
        if not self.cmd and self.entrypoint is None:
            raise DockerfileError(self.path, None, "CMD", "no CMD: the Lambda base image needs the handler")
        unused = sorted(set(self.vars.build_args) - self.vars.consumed)
        if unused:
            raise DockerfileError(
                self.path, None, "ARG", f"build args {', '.join(unused)} are not declared by any ARG"
            )

    def plan_from(self, instruction: Instruction) -> None:
        if self.base_image is not None:
            raise self.error(instruction, "multi-stage builds cannot be replayed (second FROM)")
        words = self.words(instruction, instruction.text)
        words = [w for w in words if not w.startswith("--platform=")]
        if len(words) == 3 and words[1].lower() == "as":
            words = words[:1]
        if len(words) != 1:
            raise self.error(instruction, f"expected FROM <image> [AS <name>], got {instruction.text!r}")
        image = words[0]
        repository, _, tag = image.split("@", 1)[0].partition(":")
        if repository != BASE_IMAGE_REPOSITORY:
            raise self.error(
                instruction,
                f"base image {image!r} cannot be replayed: only {BASE_IMAGE_REPOSITORY}:<tag> is known",
            )
        self.base_image = image
        self.from_line = instruction.line
        version = re.match(r"\d+\.\d+", tag)
        self.base_python = version.group(0) if version else None
        self.vars.env["LAMBDA_TASK_ROOT"] = str(self.staged(IMAGE_TASK_ROOT))
        self.vars.env["LAMBDA_RUNTIME_DIR"] = str(self.staged(IMAGE_RUNTIME_DIR))
        self.workdir = IMAGE_TASK_ROOT

    def plan_arg(self, instruction: Instruction) -> None:
        words = self.words(instruction, instruction.text)
        if not words:
            raise self.error(instruction, "expected ARG <name>[=<default>]")
        for word in words:
            name, eq, default = word.partition("=")
            if not _NAME.fullmatch(name):
                raise self.error(instruction, f"invalid ARG name {name!r}")
            self.vars.declare(name, default if eq else None, before_from=self.base_image is None)

    def plan_env(self, instruction: Instruction) -> None:
        # Every value of one ENV instruction sees the variables as they were before it, as in Docker:
        # all values are expanded first, then assigned.
        lookup = self.vars.lookup
        first = instruction.text.split(None, 1)[0] if instruction.text else ""
        try:
            if "=" in first:
                pairs = [w.partition("=") for w in _expand(instruction.text, lookup, split=True)]
                values = {k: v for k, eq, v in pairs if eq and k}
                bad = [k + eq + v for k, eq, v in pairs if not (eq and k)]
                if bad:
                    raise self.error(instruction, f"expected key=value, got {bad[0]!r}")
            else:
                parts = instruction.text.split(None, 1)
                if len(parts) != 2:
                    raise self.error(instruction, "expected ENV <key>=<value> ... or ENV <key> <value>")
                values = {parts[0]: "".join(_expand(parts[1], lookup, split=False))}
        except _ExpansionError as exc:
            raise self.expansion_error(instruction, exc) from None
        for key, value in values.items():
            self.vars.env[key] = self.stage_env_value(value)

    def stage_env_value(self, value: str) -> str:
        for root in (IMAGE_TASK_ROOT, IMAGE_RUNTIME_DIR):
            if value == root or value.startswith(root + "/"):
                return str(self.staged(value))
        return value

    def plan_workdir(self, instruction: Instruction) -> None:
        words = self.words(instruction, instruction.text)
        if len(words) != 1:
            raise self.error(instruction, f"expected one path, got {instruction.text!r}")
        self.workdir = self.image_path(words[0])
        self.steps.append(_Workdir(instruction, self.workdir))

    def plan_copy(self, instruction: Instruction) -> None:
        text = instruction.text
        flags: dict[str, str] = {}
        while True:
            flag = re.match(r"--([A-Za-z-]+)(?:=(\S*))?\s*", text)
            if flag is None:
                break
            flags[flag.group(1)] = flag.group(2) or ""
            text = text[flag.end() :]
        unknown = set(flags) - {"chown", "chmod", "link"}
        if "from" in flags:
            raise self.error(instruction, f"--from={flags['from']} (multi-stage COPY) cannot be replayed")
        if unknown:
            raise self.error(instruction, f"unsupported flag --{sorted(unknown)[0]}")
        chmod = None
        if "chmod" in flags:
            if not re.fullmatch(r"[0-7]{3,4}", flags["chmod"]):
                raise self.error(instruction, f"--chmod={flags['chmod']}: only octal modes are supported")
            chmod = int(flags["chmod"], 8)
        items = _json_list(text)  # Docker tries the JSON form first and falls back to the shell form
        if items is None:
            items = self.words(instruction, text)
        else:
            try:
                items = [
                    "".join(_expand(item, self.vars.lookup, split=False, quotes=False)) for item in items
                ]
            except _ExpansionError as exc:
                raise self.expansion_error(instruction, exc) from None
        if len(items) < 2:
            raise self.error(instruction, "expected COPY <src>... <dest>")
        *sources, dest = items
        if "<<" in instruction.text:
            raise self.error(instruction, "heredocs cannot be replayed")
        dest_unstaged = self.unstage(dest)
        is_dir = dest_unstaged.endswith(("/", "/.")) or dest_unstaged in (".", "..")
        path = self.image_path(dest_unstaged)
        if len(sources) > 1 and not is_dir:
            raise self.error(
                instruction, f"several sources need a directory destination ending in '/', got {dest!r}"
            )
        self.steps.append(_Copy(instruction, sources, path + "/" if is_dir and path != "/" else path, chmod))

    def plan_run(self, instruction: Instruction) -> None:
        tokens = _json_list(instruction.text)  # the exec form is not expanded, as in Docker
        if tokens is None:
            tokens = self.words(instruction, instruction.text, run_syntax=True)
        tokens = [self.unstage(t) for t in tokens]
        if (
            len(tokens) >= 3
            and _PYTHON_EXE.fullmatch(posixpath.basename(tokens[0]))
            and tokens[1:3]
            == [
                "-m",
                "compileall",
            ]
        ):
            self.steps.append(_Compile(instruction, tokens[3:], self.workdir))
            return
        args = self.pip_arguments(instruction, tokens)
        target_index, prefix, target = self.pip_target(instruction, args)
        pip_env = {k: v for k, v in self.vars.run_env().items() if k.startswith("PIP_")}
        self.steps.append(
            _Run(instruction, args, target_index, prefix, self.image_path(target), self.workdir, pip_env)
        )

    def pip_arguments(self, instruction: Instruction, tokens: list[str]) -> list[str]:
        exe = [posixpath.basename(t) for t in tokens[:3]]
        if len(tokens) >= 2 and _PIP_EXE.fullmatch(exe[0]) and tokens[1] == "install":
            return tokens[1:]
        if len(tokens) >= 4 and _PYTHON_EXE.fullmatch(exe[0]) and tokens[1:4] == ["-m", "pip", "install"]:
            return tokens[3:]
        raise self.error(
            instruction,
            "only `pip install ...`, `python -m pip install ...` or `python -m compileall ...` can be "
            "replayed offline, got " + " ".join(tokens),
        )

    def pip_target(self, instruction: Instruction, args: list[str]) -> tuple[int, str, str]:
        found: tuple[int, str, str] | None = None
        for i, token in enumerate(args):
            if token in _PIP_FORBIDDEN or token.split("=", 1)[0] in _PIP_FORBIDDEN:
                raise self.error(instruction, f"pip install {token} cannot be replayed: use --target")
            if token in ("--target", "-t"):
                if i + 1 >= len(args):
                    raise self.error(instruction, f"{token} needs a value")
                found = (i + 1, "", args[i + 1])
            elif token.startswith("--target="):
                found = (i, "--target=", token[len("--target=") :])
            elif token.startswith("-t") and not token.startswith("--"):
                found = (i, "-t", token[2:])
        if found is None:
            raise self.error(
                instruction,
                "pip install needs --target: replay cannot write into the base image's site-packages",
            )
        return found

    def plan_cmd(self, instruction: Instruction) -> None:
        self.cmd = self.json_array(instruction, instruction.text)

    def plan_entrypoint(self, instruction: Instruction) -> None:
        entrypoint = self.json_array(instruction, instruction.text)
        if entrypoint != [BASE_ENTRYPOINT] and not (
            entrypoint and _PYTHON_EXE.fullmatch(posixpath.basename(entrypoint[0]))
        ):
            raise self.error(
                instruction,
                f"ENTRYPOINT {entrypoint} cannot be replayed: only {BASE_ENTRYPOINT} or a python command",
            )
        self.entrypoint = entrypoint

    def json_array(self, instruction: Instruction, text: str) -> list[str]:
        value = _json_list(text)
        if value is None:
            raise self.error(instruction, f'expected the JSON array form, e.g. ["app.handler"], got {text!r}')
        return value

    # --- execution

    def execute(self, *, cache_dir: Path, python: str, runtime_client: bool) -> None:
        layers = _LayerCache(cache_dir, python)
        from_instruction = Instruction(self.from_line or 0, "FROM", self.base_image or "")
        for path in (IMAGE_TASK_ROOT, IMAGE_RUNTIME_DIR):
            _make_dir(self.staged(path), None)
        if runtime_client:
            requirement = f"{RUNTIME_CLIENT}=={_runtime_client_version()}"
            args = ["install", "--only-binary=:all:", "--no-warn-script-location", requirement]
            key = layers.key({"runtime_client": requirement}, args=args)
            layer = layers.ensure(
                key, args, cwd=self.stage, env={}, on_error=self.pip_failed(from_instruction)
            )
            _install_layer(layer, self.staged(IMAGE_RUNTIME_DIR), upgrade=True)
            sdk = base_image_sdk()
            args = ["install", "--no-deps", "--only-binary=:all:", "--no-warn-script-location", *sdk]
            key = layers.key({"base_image_sdk": sdk}, args=args)
            layer = layers.ensure(
                key, args, cwd=self.stage, env={}, on_error=self.pip_failed(from_instruction)
            )
            _install_layer(layer, self.staged(IMAGE_RUNTIME_DIR), upgrade=False)
        ignore = DockerIgnore.load(self.context)
        for step in self.steps:
            if isinstance(step, _Workdir):
                self.staged(step.path).mkdir(parents=True, exist_ok=True)
            elif isinstance(step, _Copy):
                self.copy(step, ignore)
            elif isinstance(step, _Compile):
                self.compile(step, python)
            else:
                self.run(step, layers)

    def pip_failed(self, instruction: Instruction) -> Callable[[str], DockerfileError]:
        return lambda output: self.error(instruction, f"pip install failed:\n{output}")

    def copy(self, step: _Copy, ignore: DockerIgnore) -> None:
        matches = [match for source in step.sources for match in self.copy_sources(step, source, ignore)]
        if len(matches) > 1 and not step.dest.endswith("/"):
            raise self.error(
                step.instruction, f"several sources need a directory destination ending in '/': {step.dest}"
            )
        target = self.staged(step.dest.rstrip("/") or "/")
        for source, path in matches:
            rel = _rel(path, self.context)
            if path.is_dir() and not path.is_symlink():
                # A directory source copies its contents (what the build context keeps of them).
                entries = list(_included(path, self.context, ignore))
                if rel and ignore.excluded(rel) and not entries:
                    raise self.error(step.instruction, f"source {source!r} is excluded by .dockerignore")
                _make_dir(target, step.chmod)
                for entry, is_dir in entries:
                    out = target / entry.relative_to(path)
                    if is_dir:
                        _make_dir(out, step.chmod)
                    else:
                        _copy_file(entry, out, step.chmod)
            elif ignore.excluded(rel):
                raise self.error(step.instruction, f"source {source!r} is excluded by .dockerignore")
            else:
                is_dir = step.dest.endswith("/") or (target.is_dir() and not target.is_symlink())
                _copy_file(path, target / path.name if is_dir else target, step.chmod)

    def copy_sources(self, step: _Copy, source: str, ignore: DockerIgnore) -> list[tuple[str, Path]]:
        """The context paths one COPY source names (wildcards expanded, .dockerignore applied to them)."""
        if posixpath.normpath(source).startswith(".."):
            raise self.error(step.instruction, f"source {source!r} is outside the build context")
        rel = posixpath.normpath("/" + source).lstrip("/")
        if any(c in rel for c in "*?["):
            found = sorted(p for p in self.context.glob(rel) if not ignore.excluded(_rel(p, self.context)))
            if not found:
                raise self.error(step.instruction, f"no file in the build context matches {source!r}")
            return [(source, p) for p in found]
        path = self.context / rel if rel else self.context
        if not path.exists() and not path.is_symlink():
            raise self.error(
                step.instruction, f"source {source!r} not found in the build context {self.context}"
            )
        return [(source, path)]

    def run(self, step: _Run, layers: _LayerCache) -> None:
        target = self.staged(step.target)
        referenced = self.referenced_paths(step)
        key = layers.key(
            {"workdir": step.workdir, "pip_env": step.pip_env, "files": referenced},
            args=step.tokens,
        )
        args = [self.stage_token(t) for t in step.tokens]
        workdir = self.staged(step.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        layer = layers.ensure(
            key,
            args,
            cwd=workdir,
            env=step.pip_env,
            on_error=self.pip_failed(step.instruction),
            target=(step.target_index, step.target_prefix),
        )
        _install_layer(layer, target, upgrade=any(t in ("-U", "--upgrade") for t in step.tokens))

    def compile(self, step: _Compile, python: str) -> None:
        """Run compileall with this interpreter on the staged paths (the bytecode is for its version)."""
        args = [self.stage_token(t) for t in step.args]
        workdir = self.staged(step.workdir)
        result = subprocess.run(
            [python, "-m", "compileall", *args],
            cwd=workdir,
            capture_output=True,
            text=True,
            check=False,
            umask=0o022,  # a RUN step's umask: the bytecode must be readable by Lambda's user
        )
        if result.returncode != 0:
            raise self.error(step.instruction, f"compileall failed:\n{result.stdout}{result.stderr}")

    def referenced_paths(self, step: _Run) -> dict[str, str]:
        """Digests of the stage's files and directories the pip command names (the target excluded)."""
        digests: dict[str, str] = {}
        previous = ""
        for index, token in enumerate(step.tokens):
            values: list[tuple[str, bool]] = []
            requirement_file = previous in _PIP_PATH_OPTIONS
            option = re.match(r"(--[A-Za-z0-9-]+)=(.*)$|(-[rc])(.+)$", token)
            if option:
                name, value = (option.group(1), option.group(2)) if option.group(1) else option.group(3, 4)
                values.append((value, name in _PIP_PATH_OPTIONS))
            elif not token.startswith("-"):
                values.append((token, requirement_file))
            values.extend((m.group(1), False) for m in re.finditer(r"file://(/[^\s]*)", token))
            previous = token
            if index == step.target_index:
                continue
            for value, is_requirements in values:
                if not value or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
                    continue
                image = posixpath.normpath(
                    value if value.startswith("/") else posixpath.join(step.workdir, value)
                )
                self.digest_into(step, image, digests, follow=is_requirements)
        return digests

    def digest_into(self, step: _Run, image: str, digests: dict[str, str], *, follow: bool) -> None:
        path = self.staged(image)
        if image in digests or image == step.target or not (path.is_file() or path.is_dir()):
            return
        if path.is_dir():
            digests[image] = _tree_digest(path, skip=self.staged(step.target))
            return
        data = path.read_bytes()
        digests[image] = hashlib.sha256(data).hexdigest()
        if not follow:
            return
        for line in data.decode("utf-8", "replace").splitlines():
            nested = re.match(r"\s*(?:-r|-c|--requirement|--constraint)(?:\s+|=)(\S+)", line)
            if nested is None:
                continue
            ref = nested.group(1)
            if ref.startswith("/"):
                raise self.error(
                    step.instruction,
                    f"{image} includes {ref} by absolute path, which pip would read from this machine: "
                    "use a path relative to the including file",
                )
            self.digest_into(
                step, posixpath.normpath(posixpath.join(posixpath.dirname(image), ref)), digests, follow=True
            )

    def staged_image(self) -> StagedImage:
        env = dict(self.vars.env)
        return StagedImage(
            root=self.stage,
            task_root=self.staged(IMAGE_TASK_ROOT),
            runtime_dir=self.staged(IMAGE_RUNTIME_DIR),
            env=env,
            cmd=list(self.cmd),
            workdir=self.staged(self.workdir),
            entrypoint=list(self.entrypoint) if self.entrypoint is not None else None,
            base_image=self.base_image or "",
            base_python=self.base_python,
            build_args=dict(self.vars.build_args),
        )


# ---------------------------------------------------------------------------------------- layer cache


class _LayerCache:
    """``<cache_dir>/<key>/``: one pip --target tree per key, written by rename once complete."""

    def __init__(self, cache_dir: Path, python: str) -> None:
        self.cache_dir = cache_dir
        self.python = python
        self._interpreter: dict[str, object] | None = None

    def interpreter(self) -> dict[str, object]:
        if self._interpreter is None:
            try:
                probe = subprocess.run(
                    [self.python, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
                )
            except (OSError, subprocess.SubprocessError) as exc:
                detail = getattr(exc, "stderr", "") or exc
                raise ReplayError(f"cannot query interpreter {self.python} (it needs pip): {detail}") from exc
            self._interpreter = json.loads(probe.stdout)
        return self._interpreter

    def sweep(self) -> None:
        """Remove the temporary installs of runs that were killed (their process no longer exists)."""
        for stale in self.cache_dir.glob(".tmp-*"):
            parts = stale.name.split("-")
            if len(parts) == 4 and parts[2].isdigit() and not _pid_alive(int(parts[2])):
                shutil.rmtree(stale, ignore_errors=True)

    def key(self, material: Mapping[str, object], *, args: Sequence[str]) -> str:
        payload = {"format": _CACHE_FORMAT, "args": list(args), "python": self.interpreter(), **material}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def ensure(
        self,
        key: str,
        args: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        on_error: Callable[[str], DockerfileError],
        target: tuple[int, str] | None = None,
    ) -> Path:
        final = self.cache_dir / key
        if final.is_dir():
            return final
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.sweep()
        tmp = self.cache_dir / f".tmp-{key[:16]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        tmp.chmod(0o755)  # renamed into the cache: the top of every staged layer
        try:
            command = list(args)
            if target is None:
                command[1:1] = ["--target", str(tmp)]
            else:
                index, prefix = target
                command[index] = prefix + str(tmp)
            process_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
            process_env.update(env)
            process_env.update({"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
            result = subprocess.run(
                [self.python, "-m", "pip", *command],
                cwd=cwd,
                env=process_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                check=False,
                umask=0o022,  # a RUN step's umask: what pip writes must be readable by Lambda's user
            )
            if result.returncode != 0:
                tail = "\n".join(result.stdout.splitlines()[-40:])
                raise on_error(f"$ {' '.join([self.python, '-m', 'pip', *command])}\n{tail}")
            try:
                tmp.rename(final)
            except OSError:
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def base_image_sdk() -> list[str]:
    """``name==version`` of :data:`BASE_IMAGE_SDK` as installed here (what the staged runtime dir gets)."""
    try:
        return [f"{name}=={importlib.metadata.version(name)}" for name in BASE_IMAGE_SDK]
    except importlib.metadata.PackageNotFoundError as exc:
        raise ReplayError(
            f"{exc.name} is not installed in {sys.prefix}: it pins the base image's SDK"
        ) from exc


def _runtime_client_version() -> str:
    try:
        return importlib.metadata.version(RUNTIME_CLIENT)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ReplayError(
            f"{RUNTIME_CLIENT} is not installed in {sys.prefix}: it pins the runtime client staged into "
            f"{IMAGE_RUNTIME_DIR} (pip install {RUNTIME_CLIENT})"
        ) from exc


# ------------------------------------------------------------------------------------------ file tools


def _rel(path: Path, context: Path) -> str:
    rel = path.relative_to(context).as_posix()
    return "" if rel == "." else rel


def _included(root: Path, context: Path, ignore: DockerIgnore) -> Iterator[tuple[Path, bool]]:
    """Entries under ``root`` that the build context keeps, parents first; symlinks count as files."""
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        dirnames.sort()
        kept_dirs: list[str] = []
        for name in dirnames:
            entry = base / name
            if entry.is_symlink():
                filenames.append(name)
                continue
            rel = _rel(entry, context)
            if not ignore.excluded(rel):
                yield entry, True
                kept_dirs.append(name)
            elif ignore.has_exclusions:
                kept_dirs.append(name)  # a later !pattern may re-include something inside
        dirnames[:] = kept_dirs
        for name in sorted(filenames):
            entry = base / name
            if not ignore.excluded(_rel(entry, context)):
                yield entry, False


def _make_dir(path: Path, mode: int | None) -> None:
    """``mkdir -p``: directories it creates are 0755 (a Docker build's, whatever the umask), or ``mode``."""
    if path.exists() and not path.is_dir():
        path.unlink()
    created = []
    current = path
    while not current.exists() and current != current.parent:
        created.append(current)
        current = current.parent
    path.mkdir(parents=True, exist_ok=True)
    for directory in created:
        directory.chmod(0o755)
    if mode is not None:
        path.chmod(mode)


def _copy_file(source: Path, dest: Path, mode: int | None) -> None:
    _make_dir(dest.parent, None)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()  # never write through a hard link into the layer cache
    shutil.copy2(source, dest, follow_symlinks=False)
    if mode is not None and not dest.is_symlink():
        dest.chmod(mode)


def _install_layer(layer: Path, target: Path, *, upgrade: bool) -> None:
    """Move a pip ``--target`` layer into ``target`` as pip itself does, entry by top-level entry.

    An entry already in ``target`` (say, copied there by an earlier COPY) is kept, as pip keeps it (with a
    warning) unless ``--upgrade`` is given, which replaces it; a symlink is never replaced.
    """
    target.mkdir(parents=True, exist_ok=True)
    for entry in sorted(layer.iterdir()):
        out = target / entry.name
        if out.exists() or out.is_symlink():
            if not upgrade or out.is_symlink():
                continue
            if out.is_dir():
                shutil.rmtree(out)
            else:
                out.unlink()
        if entry.is_dir() and not entry.is_symlink():
            _link_tree(entry, out)
        elif entry.is_symlink():
            out.symlink_to(os.readlink(entry))
        else:
            _link_file(entry, out)


def _link_file(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def _link_tree(source: Path, dest: Path) -> None:
    """Hard-link every file of ``source`` into ``dest`` (copying where linking fails), replacing files."""
    dest.mkdir(parents=True, exist_ok=True)
    for directory, dirnames, filenames in os.walk(source):
        base = Path(directory)
        out_dir = dest / base.relative_to(source)
        for name in list(dirnames):
            if (base / name).is_symlink():
                dirnames.remove(name)
                filenames.append(name)
            else:
                out = out_dir / name
                if out.is_symlink() or (out.exists() and not out.is_dir()):
                    out.unlink()
                out.mkdir(exist_ok=True)
        for name in filenames:
            src, out = base / name, out_dir / name
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            elif out.exists() or out.is_symlink():
                out.unlink()
            if src.is_symlink():
                out.symlink_to(os.readlink(src))
            else:
                _link_file(src, out)


def _tree_digest(root: Path, *, skip: Path) -> str:
    digest = hashlib.sha256()
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        dirnames[:] = sorted(d for d in dirnames if base / d != skip)
        for name in sorted(filenames):
            path = base / name
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            if path.is_symlink():
                digest.update(b"link:" + os.readlink(path).encode())
            else:
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ entry point


def replay(
    dockerfile: Path,
    context: Path,
    stage: Path,
    build_args: Mapping[str, str],
    *,
    cache_dir: Path,
    python: str = sys.executable,
    runtime_client: bool = True,
) -> StagedImage:
    """Replay ``dockerfile`` with build context ``context`` into the empty directory ``stage``.

    ``python`` runs pip (and, later, the staged function). ``runtime_client=False`` skips staging
    ``awslambdaric`` into the runtime dir: only for checking the Dockerfile's own steps offline, since the
    staged image cannot run without it. Raises DockerfileError (naming file, line and instruction) or
    ReplayError; on failure the stage is left empty.
    """
    dockerfile, context, stage = dockerfile.resolve(), context.resolve(), stage.resolve()
    if not context.is_dir():
        raise ReplayError(f"build context {context} is not a directory")
    if stage.exists() and (not stage.is_dir() or any(stage.iterdir())):
        raise ReplayError(f"stage {stage} must be an empty directory: replay writes an image's root there")
    replayer = _Replay(dockerfile, context, stage, build_args)
    replayer.plan(parse_dockerfile(dockerfile))
    created = not stage.exists()
    stage.mkdir(parents=True, exist_ok=True)
    try:
        replayer.execute(cache_dir=cache_dir.resolve(), python=python, runtime_client=runtime_client)
    except BaseException:
        # Like a failed docker build, a failed replay leaves no half image: the stage is empty again.
        if created:
            shutil.rmtree(stage, ignore_errors=True)
        else:
            for child in list(stage.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()
        raise
    return replayer.staged_image()
