"""Transitional: ``replay(dockerfile, ...)`` for callers that still hand over a Dockerfile (:mod:`mdk.images`
is where images are described and staged now).

A Dockerfile is staged as the recipe it renders from: a kit recipe's rendering
(:func:`mdk.images.recipe_for`), or, for the few callers that still write one, the recipe read back from
the renderer's own grammar (one instruction per line, ``${NAME}`` variables, no shell, no
``.dockerignore``), accepted only when rendering it gives the file back byte for byte. New code stages a
:class:`mdk.images.Recipe`.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from mdk.images import RECIPES, ImageError, ReplayError, StagedImage, recipe_for, stage
from mdk.images.recipe import Arg, Blank, Comment, Compile, Copy, Env, Expose, Pip, Recipe, Step, Workdir

DockerfileError = ImageError

__all__ = ["DockerfileError", "ReplayError", "StagedImage", "replay"]

_COMPILE = "python -m compileall -q --invalidation-mode unchecked-hash "


def replay(
    dockerfile: Path,
    context: Path,
    stage_dir: Path,
    build_args: Mapping[str, str],
    *,
    cache_dir: Path,
    python: str = sys.executable,
    runtime_client: bool = True,
) -> StagedImage:
    """Stage the recipe ``dockerfile`` renders from (see the module docstring) into ``stage_dir``."""
    text = dockerfile.read_text(encoding="utf-8")
    recipe = (
        recipe_for(dockerfile) if any(r.render() == text for r in RECIPES.values()) else _read(dockerfile)
    )
    return stage(
        recipe,
        context,
        stage_dir,
        build_args,
        cache_dir=cache_dir,
        python=python,
        runtime_client=runtime_client,
    )


def _read(path: Path) -> Recipe:
    text = path.read_text(encoding="utf-8")
    base, entrypoint, steps = "", None, []
    cmd: tuple[str, ...] = ()
    lines = text.split("\n")[:-1] if text.endswith("\n") else None
    for line in lines or []:
        step = _step(line)
        if isinstance(step, tuple):
            keyword, value = step
            if keyword == "FROM":
                base = value[0]
            elif keyword == "CMD":
                cmd = value
            else:
                entrypoint = value
        elif step is not None:
            steps.append(step)
    recipe = Recipe(name=str(path), base=base, steps=tuple(steps), cmd=tuple(cmd), entrypoint=entrypoint)
    if not base or recipe.render() != text:
        raise ReplayError(
            f"{path} is not a rendering of a recipe (one instruction per line, FROM first, CMD last): "
            "stage an mdk.images.Recipe instead"
        )
    return recipe


def _step(line: str) -> Step | tuple[str, tuple[str, ...]] | None:  # noqa: PLR0911, PLR0912 (one per form)
    """One line of a rendering; anything the renderer does not write gives None (caught by the round trip)."""
    keyword, _, rest = line.partition(" ")
    words = tuple(rest.split())
    if line == "":
        return Blank()
    if line.startswith("#"):
        return Comment(line[2:])
    if keyword in ("CMD", "ENTRYPOINT"):
        try:
            return keyword, tuple(str(w) for w in json.loads(rest))
        except (json.JSONDecodeError, TypeError):
            return None
    if keyword == "FROM" and len(words) == 1:
        return keyword, words
    if keyword == "ARG" and words:
        name, eq, default = rest.partition("=")
        return Arg(name, default if eq else None)
    if keyword == "ENV":
        return Env(tuple((k, v) for k, _, v in (w.partition("=") for w in words)))
    if keyword == "WORKDIR":
        return Workdir(rest)
    if keyword == "EXPOSE" and rest.isdigit():
        return Expose(int(rest))
    if keyword == "COPY" and len(words) >= 2:
        origin = re.fullmatch(r"--from=(\S+)", words[0])
        if origin:
            return Copy(words[1:-1], words[-1], context=origin.group(1))
        return Copy(words[:-1], words[-1])
    if keyword == "RUN" and rest.startswith(_COMPILE):
        return Compile(tuple(rest[len(_COMPILE) :].split()))
    if keyword == "RUN" and words[:2] == ("pip", "install") and len(words) >= 4 and words[-2] == "--target":
        return Pip(words[2:-2], target=words[-1].strip('"'))
    return None
