"""The stager's pip layers: one ``pip install --target`` tree per key, cached as Docker caches a RUN layer.

The key of a :class:`~mdk.images.recipe.Pip` step is the sha256 of its arguments (image paths: the key
does not depend on where the stage lies), the working directory, the contents of every file or directory
of the stage the arguments name (requirements and constraints files, including the ones they include with
``-r``/``-c``, local wheels and find-links directories), ``PIP_*`` variables of the recipe, and the
interpreter (version, ABI, platform, pip version). The install goes into ``<cache_dir>/.tmp-*`` and is
renamed to ``<cache_dir>/<key>`` only once pip succeeded, so a killed run never leaves a half-written
layer; the layer is then hard-linked (or copied, across file systems) into the stage. Staged files may
share inodes with the cache: treat the stage as read-only, as ``/var/task`` is in Lambda. The host's pip
configuration (index, certificates) still applies to pip, which runs with umask 022 (a RUN step's: what
it writes must be readable by Lambda's user).

The base image's runtime client (``awslambdaric``) and AWS SDK (:data:`BASE_IMAGE_SDK`) are layers of
the same cache, at the versions this environment has installed.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

IMAGE_RUNTIME_DIR = "/var/runtime"
RUNTIME_CLIENT = "awslambdaric"
#: What the base image carries besides the runtime client: the AWS SDK for Python and its dependencies.
BASE_IMAGE_SDK = ("boto3", "botocore", "jmespath", "s3transfer", "python-dateutil", "six", "urllib3")

#: Bumped when the layout of cache keys changes, so old layers are not reused by mistake.
_CACHE_FORMAT = 1
_PIP_PATH_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint"})

_PROBE = (
    "import json, platform, sys, sysconfig\n"
    "from pip import __version__ as pip_version\n"
    "print(json.dumps({'version': platform.python_version(), 'implementation': sys.implementation.name,"
    " 'soabi': sysconfig.get_config_var('SOABI'), 'platform': sysconfig.get_platform(),"
    " 'machine': platform.machine(), 'libc': list(platform.libc_ver()), 'pip': pip_version}))\n"
)


class ReplayError(Exception):
    """An image cannot be staged: the message says why (recipe step, stage, environment, interpreter)."""


class LayerCache:
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
        on_error: Callable[[str], Exception],
        target_index: int | None = None,
    ) -> Path:
        """The layer of ``key``: ``pip <args>`` installed now (``args[target_index]`` or an added
        ``--target`` naming the temporary directory), unless the cache has it."""
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
            if target_index is None:
                command[1:1] = ["--target", str(tmp)]
            else:
                command[target_index] = str(tmp)
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

    def base_image(self, runtime_dir: Path, cwd: Path, on_error: Callable[[str], Exception]) -> None:
        """Stage what the Lambda base image carries into ``runtime_dir``: the runtime client, then the SDK."""
        requirement = f"{RUNTIME_CLIENT}=={_runtime_client_version()}"
        args = ["install", "--only-binary=:all:", "--no-warn-script-location", requirement]
        layer = self.ensure(
            self.key({"runtime_client": requirement}, args=args), args, cwd=cwd, env={}, on_error=on_error
        )
        install_layer(layer, runtime_dir, upgrade=True)
        sdk = base_image_sdk()
        args = ["install", "--no-deps", "--only-binary=:all:", "--no-warn-script-location", *sdk]
        layer = self.ensure(
            self.key({"base_image_sdk": sdk}, args=args), args, cwd=cwd, env={}, on_error=on_error
        )
        install_layer(layer, runtime_dir, upgrade=False)


def pip_inputs(
    tokens: Sequence[str],
    *,
    workdir: str,
    target: str,
    staged: Callable[[str], Path],
    on_error: Callable[[str], Exception],
) -> dict[str, str]:
    """Digests of the stage's files and directories a pip command (``install ...``, image paths) names.

    ``target`` (an image path) is left out, and so is the token naming it (the last one).
    """
    digests: dict[str, str] = {}
    previous = ""
    for index, token in enumerate(tokens):
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
        if index == len(tokens) - 1:
            continue
        for value, is_requirements in values:
            if not value or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
                continue
            image = posixpath.normpath(value if value.startswith("/") else posixpath.join(workdir, value))
            _digest_into(
                image, digests, target=target, staged=staged, on_error=on_error, follow=is_requirements
            )
    return digests


def _digest_into(
    image: str,
    digests: dict[str, str],
    *,
    target: str,
    staged: Callable[[str], Path],
    on_error: Callable[[str], Exception],
    follow: bool,
) -> None:
    path = staged(image)
    if image in digests or image == target or not (path.is_file() or path.is_dir()):
        return
    if path.is_dir():
        digests[image] = _tree_digest(path, skip=staged(target))
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
            raise on_error(
                f"{image} includes {ref} by absolute path, which pip would read from this machine: "
                "use a path relative to the including file"
            )
        nested_image = posixpath.normpath(posixpath.join(posixpath.dirname(image), ref))
        _digest_into(nested_image, digests, target=target, staged=staged, on_error=on_error, follow=True)


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


def install_layer(layer: Path, target: Path, *, upgrade: bool) -> None:
    """Move a pip ``--target`` layer into ``target`` as pip itself does, entry by top-level entry.

    An entry already in ``target`` (say, copied there by an earlier Copy) is kept, as pip keeps it (with a
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
