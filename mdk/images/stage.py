"""Execute a :class:`~mdk.images.recipe.Recipe` into a staging directory, without a Docker engine.

The staging directory plays the image's root filesystem: ``Copy(("x",), "/var/task/")`` writes
``<stage>/var/task/x``. The base image's ``LAMBDA_TASK_ROOT`` and ``LAMBDA_RUNTIME_DIR`` are
``/var/task`` and ``/var/runtime`` in the recipe's values; in the staged image's environment they (and
every ENV value that is a path under them) point into the stage.

Each step does what its rendered instruction does in ``docker build``:

* :class:`Copy`: a file source goes to ``dest`` (into it, when ``dest`` ends in ``/``); a directory
  source copies its contents, leaving out ``__pycache__`` and ``*.pyc`` (what the repository's
  ``.dockerignore`` leaves out of a build; the contexts ``cdk synth`` writes hold neither). Files keep
  their modes (as COPY keeps them); directories COPY creates are 0755, whatever this process's umask.
* :class:`Pip`: ``<python> -m pip install <args> --target <target>``, a cached layer
  (:mod:`mdk.images.layers`), run in the step's WORKDIR.
* :class:`Compile`: ``<python> -m compileall`` on the staged paths, with umask 022.
* :class:`Arg` / :class:`Env` / :class:`Workdir`: the values later steps see; ENV is the image's.

Only recipes on ``public.ecr.aws/lambda/python`` can be staged. The base image's runtime client and SDK
are staged into the runtime dir (:meth:`mdk.images.layers.LayerCache.base_image`): the SDK sits after the
task root on ``PYTHONPATH``, so a function that bundles its own boto3 gets its own, as in Lambda.

Isolation: :meth:`StagedImage.command` runs ``<python> -S -m awslambdaric <handler>`` with
``PYTHONPATH=<task root>:<runtime dir>`` and an environment built from scratch. ``-S`` skips the ``site``
module, so neither the virtualenv's nor the base interpreter's site-packages is on ``sys.path``: only the
standard library, the task root and the runtime dir are, and a dependency missing from the image's
requirements fails to import as it would in the image. ``-S`` keeps the standard library importable
(json, ssl, sqlite3, ctypes, decimal, zlib, hashlib, logging) and ``awslambdaric``'s C extension loads
from ``PYTHONPATH``; what it also drops (``exit``/``quit``/``help``, ``.pth`` processing) does not apply
to ``/var/task`` or ``/var/runtime`` in Lambda either.

Known differences from the real image: the interpreter is the host's (the image's Python version is
:attr:`StagedImage.base_python`), so wheels are resolved for the host; ``USER`` is not emulated (every
staged file belongs to the user staging; :class:`mdk.local.rie.LambdaProcess` runs the function as
another user, so the stage is read-only to it, as ``/var/task`` is in Lambda).
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mdk.images.layers import (
    IMAGE_RUNTIME_DIR,
    RUNTIME_CLIENT,
    LayerCache,
    ReplayError,
    install_layer,
    pip_inputs,
)
from mdk.images.recipe import Arg, Compile, Copy, Env, Pip, Recipe, Step, Workdir

IMAGE_TASK_ROOT = "/var/task"
BASE_IMAGE_REPOSITORY = "public.ecr.aws/lambda/python"
BASE_ENTRYPOINT = "/lambda-entrypoint.sh"
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PYTHON_EXE = re.compile(r"python(3(\.\d+)?)?")
_SKIPPED = ("__pycache__",)


class ImageError(ReplayError):
    """A recipe step cannot be staged; the message names the rendering's file, line and instruction."""

    def __init__(self, recipe: Recipe, line: int | None, instruction: str, message: str) -> None:
        where = f"{recipe.name}:{line}" if line is not None else recipe.name
        super().__init__(f"{where}: {instruction}: {message}")
        self.path = recipe.name
        self.line = line
        self.instruction = instruction
        self.detail = message


@dataclass(frozen=True)
class StagedImage:
    """A staged image: its root filesystem and how to run its CMD on this machine."""

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
        # A python ENTRYPOINT (checked when staged): run it with our interpreter, isolated the same way.
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


# -------------------------------------------------------------------------------- planning (no writes)


@dataclass(frozen=True)
class _Planned:
    """A step with its values substituted (image paths), where it runs, and the line it renders at."""

    step: Step
    line: int
    keyword: str
    values: tuple[str, ...]  # Copy: sources then dest; Pip: its tokens from "install" on; Compile: paths
    workdir: str
    pip_env: dict[str, str] = field(default_factory=dict)


class _Plan:
    """Substitutes a recipe's variables step by step, so every error surfaces before anything is written."""

    def __init__(self, recipe: Recipe, build_args: Mapping[str, str]) -> None:
        self.recipe = recipe
        self.build_args = dict(build_args)
        self.args: dict[str, str | None] = {}
        self.env: dict[str, str] = {
            "LAMBDA_TASK_ROOT": IMAGE_TASK_ROOT,
            "LAMBDA_RUNTIME_DIR": IMAGE_RUNTIME_DIR,
        }
        self.workdir = IMAGE_TASK_ROOT
        self.steps: list[_Planned] = []
        repository, _, tag = recipe.base.split("@", 1)[0].partition(":")
        if repository != BASE_IMAGE_REPOSITORY:
            raise ImageError(
                recipe,
                1 + _lines(recipe),
                "FROM",
                f"base image {recipe.base!r} cannot be staged: only {BASE_IMAGE_REPOSITORY}:<tag> is known",
            )
        version = re.match(r"\d+\.\d+", tag)
        self.base_python = version.group(0) if version else None
        for step in recipe.steps:
            self.plan(step)
        entrypoint = list(recipe.entrypoint) if recipe.entrypoint is not None else None
        if entrypoint not in (None, [BASE_ENTRYPOINT]) and not (
            entrypoint and _PYTHON_EXE.fullmatch(posixpath.basename(entrypoint[0]))
        ):
            raise ImageError(
                recipe,
                None,
                "ENTRYPOINT",
                f"ENTRYPOINT {entrypoint} cannot be staged: only {BASE_ENTRYPOINT} or a python command",
            )
        if not recipe.cmd and recipe.entrypoint is None:
            raise ImageError(recipe, None, "CMD", "no CMD: the Lambda base image needs the handler")
        unused = sorted(set(self.build_args) - set(self.args))
        if unused:
            raise ImageError(
                recipe, None, "ARG", f"build args {', '.join(unused)} are not declared by any ARG"
            )

    def error(self, step: Step, keyword: str, message: str) -> ImageError:
        return ImageError(self.recipe, self.recipe.line_of(step), keyword, message)

    def value(self, step: Step, keyword: str, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in self.env:
                return self.env[name]
            value = self.args.get(name)
            if value is None:
                raise self.error(
                    step,
                    keyword,
                    f"ARG {name} is not set: pass it in build_args or give it a default (ARG {name}=...)"
                    if name in self.args
                    else f"variable {name} is not set: no ARG or ENV defines it",
                )
            return value

        return _VARIABLE.sub(replace, text)

    def image_path(self, step: Step, keyword: str, text: str) -> str:
        value = self.value(step, keyword, text)
        trailing = "/" if value.endswith("/") and value != "/" else ""
        if not value.startswith("/"):
            value = posixpath.join(self.workdir, value)
        return posixpath.normpath(value) + trailing

    def plan(self, step: Step) -> None:
        if isinstance(step, Arg):
            self.args[step.name] = self.build_args.get(step.name, step.default)
        elif isinstance(step, Env):
            # Every value of one ENV sees the variables as they were before it, as in Docker.
            values = {key: self.value(step, "ENV", value) for key, value in step.values}
            self.env.update(values)
        elif isinstance(step, Workdir):
            self.workdir = self.image_path(step, "WORKDIR", step.path)
            self.add(step, "WORKDIR", (self.workdir,))
        elif isinstance(step, Copy):
            sources = tuple(self.value(step, "COPY", source) for source in step.sources)
            dest = self.image_path(step, "COPY", step.dest)
            if len(sources) > 1 and not dest.endswith("/"):
                raise self.error(
                    step, "COPY", f"several sources need a directory destination ending in '/': {dest}"
                )
            self.add(step, "COPY", (*sources, dest))
        elif isinstance(step, Pip):
            if step.target is None or step.then is not None:
                raise self.error(
                    step,
                    "RUN",
                    "only `pip install ... --target <dir>` can be staged (the base image's "
                    "site-packages and shell commands are Docker's)",
                )
            args = tuple(self.value(step, "RUN", arg) for arg in step.args)
            tokens = ("install", *args, "--target", self.image_path(step, "RUN", step.target))
            run_env = {k: v for k, v in self.args.items() if v is not None} | self.env
            self.add(step, "RUN", tokens, pip_env={k: v for k, v in run_env.items() if k.startswith("PIP_")})
        elif isinstance(step, Compile):
            self.add(step, "RUN", tuple(self.image_path(step, "RUN", path) for path in step.paths))

    def add(self, step: Step, keyword: str, values: tuple[str, ...], **kw: dict[str, str]) -> None:
        self.steps.append(_Planned(step, self.recipe.line_of(step), keyword, values, self.workdir, **kw))


def _lines(recipe: Recipe) -> int:
    return recipe.header.render().count("\n") + 1 if recipe.header is not None else 0


# ------------------------------------------------------------------------------------------- executing


class _Stager:
    def __init__(self, plan: _Plan, context: Path, contexts: Mapping[str, Path], stage: Path) -> None:
        self.plan = plan
        self.context = context
        self.contexts = contexts
        self.stage = stage

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

    def error(self, planned: _Planned, message: str) -> ImageError:
        return ImageError(self.plan.recipe, planned.line, planned.keyword, message)

    def execute(self, layers: LayerCache, *, python: str, runtime_client: bool) -> None:
        for path in (IMAGE_TASK_ROOT, IMAGE_RUNTIME_DIR):
            _make_dir(self.staged(path))
        if runtime_client:
            line = 1 + _lines(self.plan.recipe)

            def failed(output: str) -> ImageError:
                return ImageError(self.plan.recipe, line, "FROM", f"pip install failed:\n{output}")

            layers.base_image(self.staged(IMAGE_RUNTIME_DIR), self.stage, failed)
        for planned in self.plan.steps:
            if isinstance(planned.step, Workdir):
                self.staged(planned.values[0]).mkdir(parents=True, exist_ok=True)
            elif isinstance(planned.step, Copy):
                self.copy(planned, planned.step.context)
            elif isinstance(planned.step, Compile):
                self.compile(planned, python)
            else:
                self.pip(planned, layers)

    def copy(self, planned: _Planned, context_name: str | None) -> None:
        *sources, dest = planned.values
        context = self.context if context_name is None else self.contexts.get(context_name)
        if context is None:
            raise self.error(planned, f"no build context named {context_name!r} (pass it in contexts)")
        target = self.staged(dest.rstrip("/") or "/")
        for source in sources:
            if posixpath.normpath(source).startswith(".."):
                raise self.error(planned, f"source {source!r} is outside the build context")
            rel = posixpath.normpath("/" + source).lstrip("/")
            path = context / rel if rel else context
            if not path.exists() and not path.is_symlink():
                raise self.error(planned, f"source {source!r} not found in the build context {context}")
            if path.is_dir() and not path.is_symlink():
                # A directory source copies its contents.
                _make_dir(target)
                for entry, is_dir in _entries(path):
                    out = target / entry.relative_to(path)
                    if is_dir:
                        _make_dir(out)
                    else:
                        _copy_file(entry, out)
            else:
                into = dest.endswith("/") or (target.is_dir() and not target.is_symlink())
                _copy_file(path, target / path.name if into else target)

    def pip(self, planned: _Planned, layers: LayerCache) -> None:
        tokens = planned.values
        target = tokens[-1]

        def failed(output: str) -> ImageError:
            return self.error(planned, f"pip install failed:\n{output}")

        referenced = pip_inputs(
            tokens,
            workdir=planned.workdir,
            target=target,
            staged=self.staged,
            on_error=lambda m: self.error(planned, m),
        )
        key = layers.key(
            {"workdir": planned.workdir, "pip_env": planned.pip_env, "files": referenced}, args=tokens
        )
        workdir = self.staged(planned.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        layer = layers.ensure(
            key,
            [self.stage_token(t) for t in tokens],
            cwd=workdir,
            env=planned.pip_env,
            on_error=failed,
            target_index=len(tokens) - 1,
        )
        install_layer(layer, self.staged(target), upgrade=any(t in ("-U", "--upgrade") for t in tokens))

    def compile(self, planned: _Planned, python: str) -> None:
        """Run compileall with this interpreter on the staged paths (the bytecode is for its version)."""
        args = ["-q", "--invalidation-mode", "unchecked-hash", *(str(self.staged(p)) for p in planned.values)]
        result = subprocess.run(
            [python, "-m", "compileall", *args],
            cwd=self.staged(planned.workdir),
            capture_output=True,
            text=True,
            check=False,
            umask=0o022,  # a RUN step's umask: the bytecode must be readable by Lambda's user
        )
        if result.returncode != 0:
            raise self.error(planned, f"compileall failed:\n{result.stdout}{result.stderr}")

    def staged_image(self) -> StagedImage:
        env = {key: self.stage_env_value(value) for key, value in self.plan.env.items()}
        entrypoint = self.plan.recipe.entrypoint
        return StagedImage(
            root=self.stage,
            task_root=self.staged(IMAGE_TASK_ROOT),
            runtime_dir=self.staged(IMAGE_RUNTIME_DIR),
            env=env,
            cmd=list(self.plan.recipe.cmd),
            workdir=self.staged(self.plan.workdir),
            entrypoint=list(entrypoint) if entrypoint is not None else None,
            base_image=self.plan.recipe.base,
            base_python=self.plan.base_python,
            build_args=dict(self.plan.build_args),
        )

    def stage_env_value(self, value: str) -> str:
        for root in (IMAGE_TASK_ROOT, IMAGE_RUNTIME_DIR):
            if value == root or value.startswith(root + "/"):
                return str(self.staged(value))
        return value


# ------------------------------------------------------------------------------------------ file tools


def _entries(root: Path) -> Iterator[tuple[Path, bool]]:
    """Entries under ``root`` a COPY of it writes, parents first (no bytecode); symlinks count as files."""
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        kept: list[str] = []
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                filenames.append(name)
            elif name not in _SKIPPED:
                kept.append(name)
                yield base / name, True
        dirnames[:] = kept
        for name in sorted(filenames):
            if not name.endswith(".pyc"):
                yield base / name, False


def _make_dir(path: Path) -> None:
    """``mkdir -p``: directories it creates are 0755 (a Docker build's, whatever the umask)."""
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


def _copy_file(source: Path, dest: Path) -> None:
    _make_dir(dest.parent)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)
    elif dest.exists() or dest.is_symlink():
        dest.unlink()  # never write through a hard link into the layer cache
    shutil.copy2(source, dest, follow_symlinks=False)


# ------------------------------------------------------------------------------------------ entry point


def stage(
    recipe: Recipe,
    context: Path,
    stage: Path,
    build_args: Mapping[str, str] | None = None,
    *,
    cache_dir: Path,
    python: str = sys.executable,
    runtime_client: bool = True,
    contexts: Mapping[str, Path] | None = None,
) -> StagedImage:
    """Execute ``recipe`` with build context ``context`` into the empty directory ``stage``.

    ``contexts`` are the named build contexts of ``Copy(..., context=name)`` steps. ``python`` runs pip
    (and, later, the staged function). ``runtime_client=False`` skips staging the base image's runtime
    client and SDK: only for checking a recipe's own steps offline, since the staged image cannot run
    without them. Raises :class:`ImageError` (naming the rendering's file, line and instruction) or
    :class:`ReplayError`; on failure the stage is left empty.
    """
    context, stage = context.resolve(), stage.resolve()
    if not context.is_dir():
        raise ReplayError(f"build context {context} is not a directory")
    if stage.exists() and (not stage.is_dir() or any(stage.iterdir())):
        raise ReplayError(f"stage {stage} must be an empty directory: staging writes an image's root there")
    named = {name: path.resolve() for name, path in (contexts or {}).items()}
    stager = _Stager(_Plan(recipe, build_args or {}), context, named, stage)
    created = not stage.exists()
    stage.mkdir(parents=True, exist_ok=True)
    try:
        stager.execute(LayerCache(cache_dir.resolve(), python), python=python, runtime_client=runtime_client)
    except BaseException:
        # Like a failed docker build, a failed staging leaves no half image: the stage is empty again.
        if created:
            shutil.rmtree(stage, ignore_errors=True)
        else:
            for child in list(stage.iterdir()):
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink()
        raise
    return stager.staged_image()
