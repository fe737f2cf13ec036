"""What an image is made of, typed: a :class:`Recipe` (base, steps, cmd) and its rendering as a Dockerfile.

A recipe is the one description of an image. :meth:`Recipe.render` writes the Dockerfile users
``docker build`` (the committed Dockerfiles are renderings, byte for byte: a test checks it), and
:func:`mdk.images.stage.stage` executes the same steps into a directory without Docker, so what runs
locally is what Docker builds by construction.

Values may name variables as ``${NAME}``: the recipe's ``Arg`` build arguments, ``Env`` values set by an
earlier step, and the Lambda base image's ``LAMBDA_TASK_ROOT`` / ``LAMBDA_RUNTIME_DIR``. Docker expands
them when it builds; the stager substitutes the same values (and refuses a name that is not set).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Comment:
    """Comment lines (``#`` each; an empty line of ``text`` renders a bare ``#``)."""

    text: str

    def render(self) -> str:
        return "\n".join(f"# {line}" if line else "#" for line in self.text.split("\n"))


@dataclass(frozen=True)
class Blank:
    """An empty line between groups of steps."""

    def render(self) -> str:
        return ""


@dataclass(frozen=True)
class Arg:
    """``ARG name[=default]``: a build argument (``docker build --build-arg``; ``build_args`` staged)."""

    name: str
    default: str | None = None

    def render(self) -> str:
        return f"ARG {self.name}" if self.default is None else f"ARG {self.name}={self.default}"


@dataclass(frozen=True)
class Env:
    """``ENV k=v ...``: variables of the image's environment (and of the steps after this one)."""

    values: tuple[tuple[str, str], ...]

    def render(self) -> str:
        return "ENV " + " \\\n    ".join(f"{key}={value}" for key, value in self.values)


@dataclass(frozen=True)
class Copy:
    """``COPY src... dest``: paths of the build context (a directory copies its contents).

    ``dest`` is an image path; ending in ``/`` it is a directory the sources go into. ``context`` names
    another build context than the main one (Docker's ``--build-context name=path`` with
    ``COPY --from=name``; the stager's ``contexts``).
    """

    sources: tuple[str, ...]
    dest: str
    context: str | None = None

    def render(self) -> str:
        origin = f"--from={self.context} " if self.context else ""
        return f"COPY {origin}{' '.join(self.sources)} {self.dest}"


@dataclass(frozen=True)
class Pip:
    """``RUN pip install <args> --target "<target>"``: a cached layer in the stager.

    ``target=None`` installs into the base image's site-packages, which only Docker can do (the SageMaker
    image; the stager refuses it). ``then`` is a shell command run after the install (``&&``), Docker only.
    """

    args: tuple[str, ...]
    target: str | None = "${LAMBDA_TASK_ROOT}"
    then: str | None = None

    @classmethod
    def requirements(
        cls,
        requirements: str,
        constraints: str,
        *,
        target: str | None = "${LAMBDA_TASK_ROOT}",
        then: str | None = None,
    ) -> Pip:
        """Wheels only, no pip cache in the image: ``-r requirements -c constraints``."""
        args = ("--no-cache-dir", "--only-binary=:all:", "-r", requirements, "-c", constraints)
        return cls(args, target, then)

    def render(self) -> str:
        line = "RUN pip install " + " ".join(self.args)
        if self.target is not None:
            line += f' --target "{self.target}"'
        if self.then is not None:
            line += f" \\\n    && {self.then}"
        return line


@dataclass(frozen=True)
class Compile:
    """``RUN python -m compileall``: hash-based bytecode for ``paths`` (Lambda's task root is read-only)."""

    paths: tuple[str, ...]

    def render(self) -> str:
        return "RUN python -m compileall -q --invalidation-mode unchecked-hash " + " ".join(self.paths)


@dataclass(frozen=True)
class Workdir:
    """``WORKDIR path``: where later steps and the CMD run."""

    path: str

    def render(self) -> str:
        return f"WORKDIR {self.path}"


@dataclass(frozen=True)
class Expose:
    """``EXPOSE port``: documentation for ``docker run`` (nothing to stage)."""

    port: int

    def render(self) -> str:
        return f"EXPOSE {self.port}"


Step = Comment | Blank | Arg | Env | Copy | Pip | Compile | Workdir | Expose


@dataclass(frozen=True)
class Recipe:
    """One image: ``header`` comments, ``FROM base``, the steps, then ``ENTRYPOINT`` and ``CMD``.

    ``name`` is where its rendering lives (a committed Dockerfile, relative to the repository), which
    errors name with the line of the step.
    """

    name: str
    base: str
    steps: tuple[Step, ...]
    cmd: tuple[str, ...]
    header: Comment | None = None
    entrypoint: tuple[str, ...] | None = None

    def lines(self) -> Iterator[tuple[int, Step | None, str]]:
        """``(line, step, text)`` of every instruction, in order (``step`` None: FROM, ENTRYPOINT, CMD)."""
        parts: list[tuple[Step | None, str]] = []
        if self.header is not None:
            parts.append((self.header, self.header.render()))
        parts.append((None, f"FROM {self.base}"))
        parts += [(step, step.render()) for step in self.steps]
        if self.entrypoint is not None:
            parts.append((None, "ENTRYPOINT " + json.dumps(list(self.entrypoint))))
        parts.append((None, "CMD " + json.dumps(list(self.cmd))))
        number = 1
        for step, text in parts:
            yield number, step, text
            number += text.count("\n") + 1

    def render(self) -> str:
        """The Dockerfile: ``docker build`` builds what :func:`mdk.images.stage.stage` stages."""
        return "".join(text + "\n" for _, _, text in self.lines())

    def line_of(self, step: Step) -> int:
        """The line of ``step`` in the rendering (the first, for one that continues)."""
        for number, candidate, _ in self.lines():
            if candidate is step:
                return number
        raise ValueError(f"{step!r} is not a step of {self.name}")
