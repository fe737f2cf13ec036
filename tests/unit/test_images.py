"""Images from one recipe (mdk/images): the committed Dockerfiles are renderings, and the stager executes the
recipe's steps (variables, Copy, cached pip layers, compileall) into a directory.

Offline: the pip tests install a wheel built here with --no-index, and the other tests skip staging the
runtime client (runtime_client=False), which needs PyPI; tests/e2e stages it for real.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mdk.images import (
    LAMBDA,
    RECIPES,
    SAGEMAKER,
    Arg,
    Compile,
    Copy,
    Env,
    ImageError,
    Pip,
    Recipe,
    ReplayError,
    StagedImage,
    stage,
    zip_function,
)
from mdk.images.kit import LAMBDA_BASE

REPO = Path(__file__).resolve().parents[2]


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def recipe(*steps: Any, cmd: tuple[str, ...] = ("app.handler",), **kw: Any) -> Recipe:
    return Recipe(name="Dockerfile", base=kw.pop("base", LAMBDA_BASE), steps=steps, cmd=cmd, **kw)


def stage_image(
    tmp_path: Path,
    image: Recipe,
    files: dict[str, str] | None = None,
    build_args: dict[str, str] | None = None,
    *,
    stage_dir: str = "stage",
    **kw: Any,
) -> StagedImage:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    write_files(context, files or {})
    return stage(
        image,
        context,
        tmp_path / stage_dir,
        build_args or {},
        cache_dir=tmp_path / "cache",
        runtime_client=False,
        **kw,
    )


def stage_error(tmp_path: Path, image: Recipe, files: dict[str, str] | None = None, **kw: Any) -> str:
    with pytest.raises(ImageError) as caught:
        stage_image(tmp_path, image, files, **kw)
    return str(caught.value)


# ----------------------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_committed_dockerfile_is_its_recipes_rendering(name: str) -> None:
    """Users `docker build` the committed files: they must be what the stager executes, byte for byte
    (re-render with `python -m mdk.images`)."""
    assert (REPO / name).read_text(encoding="utf-8") == RECIPES[name].render()


def test_the_rendering_check_command_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mdk.images", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_lambda_recipe_installs_the_models_own_packages_and_compiles_its_code() -> None:
    text = LAMBDA.render()
    assert "COPY ${MODEL_DIR}/requirements.txt /tmp/mdk/model-requirements.txt\n" in text
    assert (
        "RUN pip install --no-cache-dir --only-binary=:all: -r /tmp/mdk/model-requirements.txt "
        '-c /tmp/mdk/constraints.txt --target "${LAMBDA_TASK_ROOT}"\n'
    ) in text
    assert (
        "RUN python -m compileall -q --invalidation-mode unchecked-hash ${LAMBDA_TASK_ROOT}/model\n" in text
    )
    # The model's steps come after the shared ones: a new model does not invalidate their layers.
    assert text.index("ARG MODEL_DIR") > text.index("-r /tmp/mdk/requirements.txt")


def test_steps_know_their_line_in_the_rendering() -> None:
    lines = LAMBDA.render().split("\n")
    for step in LAMBDA.steps:
        assert lines[LAMBDA.line_of(step) - 1] == step.render().split("\n")[0]


def test_the_repository_build_context_leaves_out_bytecode_as_the_stager_does() -> None:
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert {"**/__pycache__", "**/*.pyc"} <= set(ignored)


# ----------------------------------------------------------------------------------------- variables


def test_arg_defaults_build_args_and_env_values(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        recipe(
            Arg("NAME", "default-name"),
            Arg("LEVEL", "info"),
            Env((("FIRST", "${NAME}"), ("SECOND", "two words"), ("LEGACY", "the rest of ${LEVEL} line"))),
            Env(
                (
                    ("MODEL", "${LAMBDA_TASK_ROOT}/model"),
                    ("LITERAL", "/var/task/lib"),
                    ("PLAIN", "/opt/x"),
                    ("NOT_A_VARIABLE", "$NAME"),
                )
            ),
        ),
        build_args={"LEVEL": "debug"},
    )
    env = image.env
    assert env["FIRST"] == "default-name"
    assert env["SECOND"] == "two words"
    assert env["LEGACY"] == "the rest of debug line"
    assert env["MODEL"] == str(image.task_root / "model")
    assert env["LITERAL"] == str(image.task_root / "lib")
    assert env["PLAIN"] == "/opt/x"
    assert env["NOT_A_VARIABLE"] == "$NAME"  # only ${NAME} is a variable, as the renderings write them
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path / "stage" / "var" / "task")
    assert env["LAMBDA_RUNTIME_DIR"] == str(tmp_path / "stage" / "var" / "runtime")
    assert "NAME" not in env  # ARGs are not part of the image's environment
    assert image.base_python == "3.12"
    assert image.build_args == {"LEVEL": "debug"}


def test_all_values_of_one_env_step_see_the_previous_values(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path, recipe(Env((("A", "old"),)), Env((("A", "new"), ("B", "${A}"))), Env((("C", "${A}"),)))
    )
    assert (image.env["A"], image.env["B"], image.env["C"]) == ("new", "old", "new")


def test_env_wins_over_arg(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path, recipe(Arg("X", "from-arg"), Env((("X", "from-env"),)), Env((("Y", "${X}"),)))
    )
    assert image.env["Y"] == "from-env"


def test_an_unset_arg_used_in_copy_is_an_error_naming_it(tmp_path: Path) -> None:
    error = stage_error(tmp_path, recipe(Arg("MODEL_DIR"), Copy(("${MODEL_DIR}",), "/var/task/model")))
    assert "Dockerfile:3: COPY: ARG MODEL_DIR is not set" in error


def test_undefined_variables_are_errors_naming_them(tmp_path: Path) -> None:
    error = stage_error(tmp_path, recipe(Env((("A", "${NOPE}"),))))
    assert "Dockerfile:2: ENV: variable NOPE is not set" in error


def test_build_args_no_arg_declares_are_refused(tmp_path: Path) -> None:
    error = stage_error(tmp_path, recipe(), build_args={"MODLE_DIR": "x"})
    assert "build args MODLE_DIR are not declared by any ARG" in error


def test_only_images_on_the_lambda_base_can_be_staged(tmp_path: Path) -> None:
    error = stage_error(tmp_path, SAGEMAKER)
    assert (
        "sagemaker_endpoints/Dockerfile:8: FROM: base image 'python:3.12-slim-bookworm' cannot be staged"
        in error
    )


def test_a_missing_cmd_and_steps_only_docker_runs_are_errors(tmp_path: Path) -> None:
    assert "CMD: no CMD" in stage_error(tmp_path, recipe(cmd=()))
    error = stage_error(tmp_path, recipe(Pip(("numpy",), target=None)))
    assert "Dockerfile:2: RUN: only `pip install ... --target <dir>` can be staged" in error
    error = stage_error(tmp_path, recipe(Pip(("numpy",), then="rm -rf /root/.cache")))
    assert "Dockerfile:2: RUN: only `pip install ... --target <dir>` can be staged" in error
    error = stage_error(tmp_path, recipe(entrypoint=("/bin/sh", "-c")))
    assert "ENTRYPOINT: ENTRYPOINT ['/bin/sh', '-c'] cannot be staged" in error


# ---------------------------------------------------------------------------------------------- Copy


def test_copy_files_directories_and_several_sources(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        recipe(
            Copy(("app.py",), "${LAMBDA_TASK_ROOT}/"),
            Copy(("app.py",), "/var/task/renamed.py"),
            Copy(("pkg",), "${LAMBDA_TASK_ROOT}/pkg"),
            Copy(("a.txt", "b.txt"), "/tmp/both/"),
            Copy(("a.txt",), "sub/"),
        ),
        {
            "app.py": "print('app')\n",
            "pkg/__init__.py": "",
            "pkg/inner/mod.py": "X = 1\n",
            "pkg/__pycache__/mod.cpython-311.pyc": "",
            "pkg/inner/stale.pyc": "",
            "a.txt": "a",
            "b.txt": "b",
        },
    )
    task = image.task_root
    assert (task / "app.py").read_text() == "print('app')\n"
    assert (task / "renamed.py").read_text() == "print('app')\n"
    assert (task / "pkg" / "__init__.py").is_file()
    assert (task / "pkg" / "inner" / "mod.py").read_text() == "X = 1\n"
    assert not (task / "pkg" / "pkg").exists()  # a directory source copies its contents
    assert not (task / "pkg" / "__pycache__").exists()  # as the repository's .dockerignore leaves it out
    assert not (task / "pkg" / "inner" / "stale.pyc").exists()
    assert sorted(p.name for p in (image.root / "tmp" / "both").iterdir()) == ["a.txt", "b.txt"]
    assert (task / "sub" / "a.txt").read_text() == "a"  # relative to the WORKDIR, /var/task
    assert image.workdir == task


def test_copy_keeps_file_modes_and_creates_world_readable_directories_whatever_the_umask(
    tmp_path: Path,
) -> None:
    write_files(tmp_path / "context", {"pkg/mod.py": "", "secret.txt": ""})
    (tmp_path / "context" / "pkg" / "mod.py").chmod(0o644)
    (tmp_path / "context" / "secret.txt").chmod(0o600)
    old = os.umask(0o077)
    try:
        image = stage_image(
            tmp_path,
            recipe(
                Copy(("pkg",), "/var/task/deep/pkg"),
                Copy(("secret.txt",), "/var/task/"),
                Compile(("/var/task/deep/pkg",)),
            ),
        )
    finally:
        os.umask(old)
    task = image.task_root
    for directory in (task, task / "deep", task / "deep" / "pkg", task / "deep" / "pkg" / "__pycache__"):
        assert directory.stat().st_mode & 0o777 == 0o755, directory
    assert (task / "deep" / "pkg" / "mod.py").stat().st_mode & 0o777 == 0o644
    [pyc] = (task / "deep" / "pkg" / "__pycache__").iterdir()
    assert pyc.stat().st_mode & 0o444 == 0o444  # Lambda's user reads the bytecode
    assert (task / "secret.txt").stat().st_mode & 0o777 == 0o600  # as COPY keeps it


def test_several_sources_need_a_directory_destination(tmp_path: Path) -> None:
    error = stage_error(tmp_path, recipe(Copy(("a", "b"), "/var/task")))
    assert "Dockerfile:2: COPY: several sources need a directory destination ending in '/'" in error


def test_copy_of_a_missing_source_or_one_outside_the_context_is_an_error(tmp_path: Path) -> None:
    error = stage_error(tmp_path, recipe(Env((("A", "1"),)), Copy(("missing.py",), "/var/task/")))
    assert "Dockerfile:3: COPY: source 'missing.py' not found in the build context" in error
    error = stage_error(tmp_path, recipe(Copy(("../secret",), "/var/task/")))
    assert "Dockerfile:2: COPY: source '../secret' is outside the build context" in error


def test_the_stage_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "leftover").write_text("")
    with pytest.raises(ReplayError, match="must be an empty directory"):
        stage_image(tmp_path, recipe())


def test_a_zip_function_is_its_layers_python_then_its_code_without_a_dockerfile(tmp_path: Path) -> None:
    code, layer, empty = tmp_path / "code", tmp_path / "layer", tmp_path / "empty-layer"
    write_files(code, {"lambda_handlers/batch_trigger.py": "code", "shared.py": "from the code"})
    write_files(layer, {"python/mdk_runtime/batch.py": "layer", "python/shared.py": "from the layer"})
    empty.mkdir()
    image_recipe, contexts = zip_function("lambda_handlers.batch_trigger.handler", [layer, empty])
    assert contexts == {"layer0": layer}
    image = stage(
        image_recipe,
        code,
        tmp_path / "stage",
        {},
        cache_dir=tmp_path / "cache",
        runtime_client=False,
        contexts=contexts,
    )
    task = image.task_root
    assert (task / "lambda_handlers" / "batch_trigger.py").read_text() == "code"
    assert (task / "mdk_runtime" / "batch.py").read_text() == "layer"
    assert (task / "shared.py").read_text() == "from the code"  # the code is copied last
    assert image.cmd == ["lambda_handlers.batch_trigger.handler"]
    assert not list(tmp_path.rglob("Dockerfile"))
    assert "COPY --from=layer0 python/ ${LAMBDA_TASK_ROOT}/\n" in image_recipe.render()


# ------------------------------------------------------------------------------------ running the image


def test_the_staged_command_runs_the_runtime_client_with_site_packages_off(tmp_path: Path) -> None:
    image = stage_image(tmp_path, recipe(Env((("MINE", "1"),))))
    assert image.command("/usr/bin/python3") == [
        "/usr/bin/python3",
        "-S",
        "-m",
        "awslambdaric",
        "app.handler",
    ]
    env = image.process_env({"EXTRA": "2"})
    assert env["PYTHONPATH"] == f"{image.task_root}{os.pathsep}{image.runtime_dir}"
    assert (env["MINE"], env["EXTRA"]) == ("1", "2")
    assert "VIRTUAL_ENV" not in env
    assert "HOME" not in env
    # With -S and this environment, numpy (in this venv and in the base interpreter's site-packages)
    # is not importable, while the standard library is.
    probe = (
        "import importlib.util, json, ssl, sqlite3, sys; "
        "print(importlib.util.find_spec('numpy') is None, importlib.util.find_spec('pytest') is None)"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["True", "True"]


def test_a_python_entrypoint_is_run_with_our_interpreter(tmp_path: Path) -> None:
    image = stage_image(tmp_path, recipe(entrypoint=("python3", "-m", "awslambdaric")))
    assert image.command("/py") == ["/py", "-S", "-m", "awslambdaric", "app.handler"]


# --------------------------------------------------------------------------------- cached pip layers


def make_wheel(directory: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so pip can install offline (--no-index)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: mdk-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


PIP_RECIPE = recipe(
    Copy(("wheels/",), "/tmp/wheels/"),
    Copy(("requirements.txt", "constraints.txt"), "/tmp/req/"),
    Pip(("--no-index", "--find-links", "/tmp/wheels", "-r", "/tmp/req/requirements.txt")),
    Copy(("app.py",), "${LAMBDA_TASK_ROOT}/"),
)


def cache_entries(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir())


def test_pip_install_runs_once_then_comes_from_the_layer_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context = tmp_path / "context"
    make_wheel(context / "wheels")
    files = {
        "requirements.txt": "-c constraints.txt\ntinypkg\n",
        "constraints.txt": "tinypkg==1.0\n",
        "app.py": "",
    }
    image = stage_image(tmp_path, PIP_RECIPE, files)
    installed = image.task_root / "tinypkg" / "__init__.py"
    assert installed.read_text() == "VERSION = '1.0'\n"
    assert (image.task_root / "app.py").is_file()
    cache = tmp_path / "cache"
    [key] = cache_entries(cache)  # and no .tmp-* directory left behind
    assert os.stat(installed).st_ino == os.stat(cache / key / "tinypkg" / "__init__.py").st_ino

    # Same inputs, another stage: no pip install runs, the layer is linked from the cache.
    commands: list[list[str]] = []
    real_run = subprocess.run

    def recording_run(args: list[str], **kwargs: Any) -> Any:
        commands.append(list(args))
        return real_run(args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording_run)  # what mdk.images.layers calls
    again = stage_image(tmp_path, PIP_RECIPE, files, stage_dir="stage-2")
    assert not [c for c in commands if "install" in c]
    assert cache_entries(cache) == [key]
    assert os.stat(again.task_root / "tinypkg" / "__init__.py").st_ino == os.stat(installed).st_ino

    # A change in a file the requirements include (-c constraints.txt) is a new layer.
    files["constraints.txt"] = "tinypkg==1.0  # pinned\n"
    stage_image(tmp_path, PIP_RECIPE, files, stage_dir="stage-3")
    assert [c for c in commands if "install" in c]
    assert len(cache_entries(cache)) == 2


def test_the_lambda_recipes_layer_keys_are_the_ones_the_dockerfile_replay_used(tmp_path: Path) -> None:
    """The key of a pip step is what it was when the Dockerfile was replayed: caches stay valid."""
    from mdk.images.layers import LayerCache, pip_inputs

    tokens = [
        "install",
        "--no-cache-dir",
        "--only-binary=:all:",
        "-r",
        "/tmp/mdk/requirements.txt",
        "-c",
        "/tmp/mdk/constraints.txt",
        "--target",
        "/var/task",
    ]
    assert Pip.requirements("/tmp/mdk/requirements.txt", "/tmp/mdk/constraints.txt").render() == (
        "RUN pip " + " ".join(tokens[:-1]) + ' "${LAMBDA_TASK_ROOT}"'
    )
    write_files(
        tmp_path, {"tmp/mdk/requirements.txt": "-c constraints.txt\nx\n", "tmp/mdk/constraints.txt": "x==1\n"}
    )
    files = pip_inputs(
        tokens,
        workdir="/var/task",
        target="/var/task",
        staged=lambda p: tmp_path / p.lstrip("/"),
        on_error=ValueError,
    )
    assert sorted(files) == ["/tmp/mdk/constraints.txt", "/tmp/mdk/requirements.txt"]
    cache = LayerCache(tmp_path / "cache", sys.executable)
    payload = {"workdir": "/var/task", "pip_env": {}, "files": files}
    # The replay's material, spelled out: format 1, the tokens, the interpreter, workdir, PIP_* env, files.
    expected = hashlib.sha256(
        json.dumps(
            {"format": 1, "args": tokens, "python": cache.interpreter(), **payload}, sort_keys=True
        ).encode()
    ).hexdigest()
    assert cache.key(payload, args=tokens) == expected


def test_a_failed_pip_install_names_the_line_and_leaves_no_cache_entry(tmp_path: Path) -> None:
    context = tmp_path / "context"
    make_wheel(context / "wheels")
    # What a run killed mid-install leaves: its temporary directory, named after its (dead) pid.
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()
    stale = tmp_path / "cache" / f".tmp-0123456789abcdef-{dead.pid}-deadbeef"
    (stale / "half").mkdir(parents=True)
    files = {
        "requirements.txt": "-c constraints.txt\ntinypkg\n",
        "constraints.txt": "tinypkg==2.0\n",
        "app.py": "",
    }
    error = stage_error(tmp_path, PIP_RECIPE, files)
    assert ":4: RUN: pip install failed" in error
    assert "tinypkg" in error
    assert cache_entries(tmp_path / "cache") == []
    assert not (tmp_path / "stage").exists()  # no half image either
    assert not stale.exists()


@pytest.mark.parametrize(("flag", "expected"), [((), "copied"), (("--upgrade",), "VERSION = '1.0'\n")])
def test_pip_keeps_what_the_target_already_holds_unless_upgrading(
    tmp_path: Path, flag: tuple[str, ...], expected: str
) -> None:
    make_wheel(tmp_path / "context" / "wheels")
    image_recipe = recipe(
        Copy(("wheels/",), "/tmp/wheels/"),
        Copy(("tinypkg",), "/var/task/tinypkg"),
        Pip((*flag, "--no-index", "--find-links", "/tmp/wheels", "tinypkg"), target="/var/task"),
    )
    image = stage_image(tmp_path, image_recipe, {"tinypkg/__init__.py": "copied"})
    assert (image.task_root / "tinypkg" / "__init__.py").read_text() == expected
    assert (image.task_root / "tinypkg-1.0.dist-info").is_dir()


def test_compileall_writes_bytecode_for_copied_sources(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        recipe(
            Copy(("pkg",), "/var/task/pkg"), Compile(("${LAMBDA_TASK_ROOT}/pkg",)), cmd=("pkg.app.handler",)
        ),
        {"pkg/__init__.py": "", "pkg/app.py": "def handler(event, context):\n    return 1\n"},
    )
    compiled = sorted(p.name for p in (image.task_root / "pkg" / "__pycache__").iterdir())
    tag = sys.implementation.cache_tag
    assert compiled == [f"__init__.{tag}.pyc", f"app.{tag}.pyc"]


def test_a_failing_compileall_names_the_line(tmp_path: Path) -> None:
    error = stage_error(
        tmp_path,
        recipe(Copy(("pkg",), "/var/task/pkg"), Compile(("/var/task/pkg",)), cmd=("pkg.app.handler",)),
        {"pkg/app.py": "def handler(:\n"},
    )
    assert ":3: RUN: compileall failed" in error
