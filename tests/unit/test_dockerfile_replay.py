"""Dockerfile replay (mdk/local/dockerfile.py): parsing, variables, COPY, .dockerignore and cached pip layers.

Offline: the pip tests install a wheel built here with --no-index, and the other tests skip staging the
runtime client (runtime_client=False), which needs PyPI; tests/e2e stages it for real.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from mdk.local.dockerfile import (
    DockerfileError,
    DockerIgnore,
    ReplayError,
    StagedImage,
    parse_dockerfile,
    replay,
)

REPO = Path(__file__).resolve().parents[2]
BASE = "FROM public.ecr.aws/lambda/python:3.12"


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def stage_image(
    tmp_path: Path,
    dockerfile: str,
    files: dict[str, str] | None = None,
    build_args: dict[str, str] | None = None,
    *,
    stage: str = "stage",
) -> StagedImage:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    write_files(context, files or {})
    (context / "Dockerfile").write_text(dockerfile)
    return replay(
        context / "Dockerfile",
        context,
        tmp_path / stage,
        build_args or {},
        cache_dir=tmp_path / "cache",
        runtime_client=False,
    )


def replay_error(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None, **kw: Any) -> str:
    with pytest.raises(DockerfileError) as caught:
        stage_image(tmp_path, dockerfile, files, **kw)
    return str(caught.value)


# ------------------------------------------------------------------------------------------- parsing


def test_parser_joins_continuations_and_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(
        "# syntax=docker/dockerfile:1\n"
        "# a comment\n"
        f"{BASE}\n"
        "\n"
        "ENV A=1 \\\n"
        "    # a comment inside the continuation is dropped\n"
        "\n"
        "    B=2\n"
        '   cmd ["app.handler"]\n'
    )
    instructions = parse_dockerfile(path)
    assert [(i.line, i.keyword) for i in instructions] == [(3, "FROM"), (5, "ENV"), (9, "CMD")]
    assert instructions[1].text == "A=1     B=2"


@pytest.mark.parametrize(
    "instruction",
    [
        "ADD app.py /var/task/",
        "EXPOSE 8080",
        "USER nobody",
        "LABEL a=b",
        "VOLUME /data",
        'SHELL ["/bin/bash", "-c"]',
        "HEALTHCHECK NONE",
        "STOPSIGNAL SIGTERM",
        "ONBUILD RUN true",
        "MAINTAINER someone",
        "FETCH something",
    ],
)
def test_every_unsupported_instruction_is_an_error_naming_its_line(tmp_path: Path, instruction: str) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(f'{BASE}\n# comment\n{instruction}\nCMD ["app.handler"]\n')
    with pytest.raises(DockerfileError) as caught:
        parse_dockerfile(path)
    keyword = instruction.split(maxsplit=1)[0]
    assert caught.value.line == 3
    assert caught.value.instruction == keyword
    assert str(caught.value).startswith(f"{path}:3: {keyword}: ")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "RUN echo hello",
            "only `pip install ...`, `python -m pip install ...` or `python -m compileall ...`",
        ),
        (
            "RUN apt-get install -y gcc",
            "only `pip install ...`, `python -m pip install ...` or `python -m compileall ...`",
        ),
        ("RUN pip install numpy --target /var/task && rm -rf /root/.cache", "shell syntax '&'"),
        ("RUN pip install numpy>=2 --target /var/task", "shell syntax '>'"),
        ("RUN pip install $(cat reqs) --target /var/task", "command substitution"),
        ("RUN pip install numpy", "needs --target"),
        ("RUN pip install --user numpy", "--user cannot be replayed"),
        ("COPY --from=builder /out /var/task/", "--from=builder"),
        ("COPY --parents a /var/task/", "unsupported flag --parents"),
        ("COPY a b /var/task", "ending in '/'"),
        ("COPY onlyone", "expected COPY <src>... <dest>"),
        ("ENTRYPOINT /lambda-entrypoint.sh", "JSON array form"),
        ('ENTRYPOINT ["/bin/sh", "-c"]', "cannot be replayed"),
        ("CMD app.handler", "JSON array form"),
        ("FROM python:3.12", "multi-stage builds"),
        ("ENV =nokey", "expected key=value"),
        ("WORKDIR", "expected one path"),
    ],
)
def test_instructions_outside_the_subset_are_errors_naming_the_line(
    tmp_path: Path, line: str, message: str
) -> None:
    error = replay_error(tmp_path, f'{BASE}\n\n{line}\nCMD ["app.handler"]\n')
    assert ":3: " in error
    assert message in error


def test_base_image_must_be_the_lambda_python_image(tmp_path: Path) -> None:
    error = replay_error(tmp_path, 'FROM python:3.12-slim\nCMD ["app.handler"]\n')
    assert ":1: FROM: base image 'python:3.12-slim' cannot be replayed" in error


def test_instructions_before_from_and_a_missing_cmd_are_errors(tmp_path: Path) -> None:
    assert ":1: ENV: must come after FROM" in replay_error(tmp_path, "ENV A=1\n" + BASE + "\n")
    assert "CMD: no CMD" in replay_error(tmp_path, BASE + "\n")


def test_a_non_default_escape_directive_is_refused(tmp_path: Path) -> None:
    error = replay_error(tmp_path, "# escape=`\n" + BASE + "\n")
    assert ":1: escape: only the default escape character" in error


def test_the_project_dockerfile_parses() -> None:
    instructions = parse_dockerfile(REPO / "lambda_handlers" / "Dockerfile")
    assert instructions[0].keyword == "FROM"
    assert {"COPY", "RUN", "CMD"} <= {i.keyword for i in instructions}


# ----------------------------------------------------------------------------------------- variables


def test_arg_defaults_build_args_and_env_forms(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        f"ARG TAG_UNUSED=x\n{BASE}\n"
        "ARG NAME=default-name\n"
        "ARG LEVEL=info\n"
        "ENV FIRST=${NAME} SECOND=\"two words\" THIRD='$NAME literally' FOURTH=a\\ b\n"
        "ENV LEGACY the rest of ${LEVEL} line\n"
        "ENV DEFAULTED=${MISSING_BUT_DEFAULTED:-fallback} ALT=${NAME:+set} NO_ALT=${EMPTY:+x}\n"
        "ARG EMPTY=\n"
        "ENV AFTER_EMPTY=${EMPTY:-was-empty}\n"
        "ENV MODEL=${LAMBDA_TASK_ROOT}/model LITERAL=/var/task/lib PLAIN=/opt/x\n"
        'CMD ["app.handler"]\n',
        build_args={"LEVEL": "debug", "TAG_UNUSED": "y"},
    )
    env = image.env
    assert env["FIRST"] == "default-name"
    assert env["SECOND"] == "two words"
    assert env["THIRD"] == "$NAME literally"
    assert env["FOURTH"] == "a b"
    assert env["LEGACY"] == "the rest of debug line"
    assert env["DEFAULTED"] == "fallback"
    assert env["ALT"] == "set"
    assert env["AFTER_EMPTY"] == "was-empty"
    assert env["MODEL"] == str(image.task_root / "model")
    assert env["LITERAL"] == str(image.task_root / "lib")
    assert env["PLAIN"] == "/opt/x"
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path / "stage" / "var" / "task")
    assert env["LAMBDA_RUNTIME_DIR"] == str(tmp_path / "stage" / "var" / "runtime")
    assert "NAME" not in env  # ARGs are not part of the image's environment
    assert image.base_python == "3.12"


def test_all_values_of_one_env_instruction_see_the_previous_values(tmp_path: Path) -> None:
    image = stage_image(tmp_path, f'{BASE}\nENV A=old\nENV A=new B=$A\nENV C=$A\nCMD ["h.h"]\n')
    assert (image.env["A"], image.env["B"], image.env["C"]) == ("new", "old", "new")


def test_env_wins_over_arg(tmp_path: Path) -> None:
    image = stage_image(tmp_path, f'{BASE}\nARG X=from-arg\nENV X=from-env\nENV Y=$X\nCMD ["h.h"]\n')
    assert image.env["Y"] == "from-env"


def test_an_unset_arg_used_in_copy_is_an_error_naming_it(tmp_path: Path) -> None:
    error = replay_error(
        tmp_path, f'{BASE}\nARG MODEL_DIR\nCOPY ${{MODEL_DIR}} /var/task/model\nCMD ["h.h"]\n'
    )
    assert ":3: COPY: ARG MODEL_DIR is not set" in error


def test_undefined_variables_and_args_only_declared_before_from_are_errors(tmp_path: Path) -> None:
    assert ":2: ENV: variable NOPE is not set" in replay_error(
        tmp_path, f'{BASE}\nENV A=$NOPE\nCMD ["h.h"]\n'
    )
    error = replay_error(tmp_path, f'ARG V=1\n{BASE}\nENV A=$V\nCMD ["h.h"]\n')
    assert ":3: ENV: ARG V is declared before FROM only" in error


def test_an_arg_declared_before_from_can_be_redeclared_after_it(tmp_path: Path) -> None:
    image = stage_image(tmp_path, f'ARG V=1\n{BASE}\nARG V\nENV A=$V\nCMD ["h.h"]\n', build_args={"V": "2"})
    assert image.env["A"] == "2"


def test_the_platform_args_are_predefined_like_docker(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        f'{BASE}\nARG TARGETARCH\nENV ARCH=$TARGETARCH\nCMD ["h.h"]\n',
        build_args={"TARGETARCH": "arm64"},
    )
    assert image.env["ARCH"] == "arm64"
    image = stage_image(tmp_path, f'{BASE}\nARG TARGETOS\nENV OS=$TARGETOS\nCMD ["h.h"]\n', stage="other")
    assert image.env["OS"] == "linux"


def test_build_args_no_arg_declares_are_refused(tmp_path: Path) -> None:
    error = replay_error(tmp_path, f'{BASE}\nCMD ["h.h"]\n', build_args={"MODLE_DIR": "x"})
    assert "build args MODLE_DIR are not declared by any ARG" in error


# ---------------------------------------------------------------------------------------------- COPY


def test_copy_files_directories_and_several_sources(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        f"{BASE}\n"
        "COPY app.py ${LAMBDA_TASK_ROOT}/\n"
        "COPY app.py /var/task/renamed.py\n"
        "COPY pkg ${LAMBDA_TASK_ROOT}/pkg\n"
        "COPY a.txt b.txt /tmp/both/\n"
        'COPY ["with space.txt", "/tmp/json/"]\n'
        "COPY *.cfg /etc/cfg/\n"
        "WORKDIR /var/task/sub\n"
        "COPY a.txt .\n"
        "COPY --chmod=600 --chown=1000:1000 b.txt relative/b.txt\n"
        'CMD ["app.handler"]\n',
        {
            "app.py": "print('app')\n",
            "pkg/__init__.py": "",
            "pkg/inner/mod.py": "X = 1\n",
            "a.txt": "a",
            "b.txt": "b",
            "with space.txt": "s",
            "one.cfg": "1",
            "two.cfg": "2",
        },
    )
    task = image.task_root
    assert (task / "app.py").read_text() == "print('app')\n"
    assert (task / "renamed.py").read_text() == "print('app')\n"
    assert (task / "pkg" / "__init__.py").is_file()
    assert (task / "pkg" / "inner" / "mod.py").read_text() == "X = 1\n"
    assert not (task / "pkg" / "pkg").exists()  # a directory source copies its contents
    assert sorted(p.name for p in (image.root / "tmp" / "both").iterdir()) == ["a.txt", "b.txt"]
    assert (image.root / "tmp" / "json" / "with space.txt").read_text() == "s"
    assert sorted(p.name for p in (image.root / "etc" / "cfg").iterdir()) == ["one.cfg", "two.cfg"]
    assert (task / "sub" / "a.txt").read_text() == "a"
    assert (task / "sub" / "relative" / "b.txt").stat().st_mode & 0o777 == 0o600
    assert image.workdir == task / "sub"


def test_copy_falls_back_to_the_shell_form_when_the_json_form_does_not_parse(tmp_path: Path) -> None:
    image = stage_image(tmp_path, f'{BASE}\nCOPY [ab].txt /x/\nCMD ["h.h"]\n', {"a.txt": "a", "c.txt": "c"})
    assert [p.name for p in (image.root / "x").iterdir()] == ["a.txt"]


def test_copy_of_a_missing_source_or_one_outside_the_context_is_an_error(tmp_path: Path) -> None:
    error = replay_error(tmp_path, f'{BASE}\n\nCOPY missing.py /var/task/\nCMD ["h.h"]\n')
    assert ":3: COPY: source 'missing.py' not found in the build context" in error
    error = replay_error(tmp_path, f'{BASE}\nCOPY ../secret /var/task/\nCMD ["h.h"]\n')
    assert ":2: COPY: source '../secret' is outside the build context" in error
    error = replay_error(tmp_path, f'{BASE}\nCOPY *.nothing /var/task/\nCMD ["h.h"]\n')
    assert ":2: COPY: no file in the build context matches '*.nothing'" in error


DOCKERIGNORE = """\
# only what the image needs
*
!app.py
!pkg/**
!model/**
**/__pycache__
**/*.pyc
model/secret.txt
"""


def test_dockerignore_filters_copied_directories_last_match_winning(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        f'{BASE}\nCOPY app.py /var/task/\nCOPY pkg /var/task/pkg\nCOPY model /var/task/model\nCMD ["h.h"]\n',
        {
            ".dockerignore": DOCKERIGNORE,
            "app.py": "",
            "notes.md": "",
            "pkg/mod.py": "",
            "pkg/__pycache__/mod.cpython-311.pyc": "",
            "pkg/deep/x.pyc": "",
            "pkg/deep/x.py": "",
            "model/model.onnx": "",
            "model/secret.txt": "",
        },
    )
    staged = sorted(
        p.relative_to(image.task_root).as_posix() for p in image.task_root.rglob("*") if p.is_file()
    )
    assert staged == ["app.py", "model/model.onnx", "pkg/deep/x.py", "pkg/mod.py"]


def test_copy_of_an_excluded_source_is_an_error_naming_it(tmp_path: Path) -> None:
    files = {".dockerignore": DOCKERIGNORE, "notes.md": "", "docs/a.md": "", "model/secret.txt": ""}
    error = replay_error(tmp_path, f'{BASE}\nCOPY notes.md /var/task/\nCMD ["h.h"]\n', files)
    assert ":2: COPY: source 'notes.md' is excluded by .dockerignore" in error
    error = replay_error(tmp_path, f'{BASE}\nCOPY docs /var/task/docs\nCMD ["h.h"]\n', files)
    assert "source 'docs' is excluded by .dockerignore" in error
    error = replay_error(tmp_path, f'{BASE}\nCOPY model/secret.txt /var/task/\nCMD ["h.h"]\n', files)
    assert "source 'model/secret.txt' is excluded by .dockerignore" in error


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("README.md", True),
        ("layers", True),
        ("layers/requirements.txt", False),
        ("layers/other.txt", True),
        ("layers/python/mdk_runtime/service.py", False),
        ("layers/python/mdk_runtime/__pycache__/service.cpython-311.pyc", True),
        ("lambda_handlers/inference.py", False),
        ("lambda_handlers/sub/x.pyc", True),
        ("build/bundles/iris/model.onnx", False),
        ("build/other/x", True),
        ("constraints.txt", False),
    ],
)
def test_dockerignore_patterns_match_like_docker(path: str, excluded: bool) -> None:
    ignore = DockerIgnore(
        [
            "*",
            "!layers/requirements.txt",
            "!constraints.txt",
            "!layers/python/mdk_runtime/**",
            "!lambda_handlers/**",
            "!build/bundles/**",
            "**/__pycache__",
            "**/*.pyc",
        ]
    )
    assert ignore.excluded(path) is excluded


def test_the_stage_must_be_empty(tmp_path: Path) -> None:
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "leftover").write_text("")
    with pytest.raises(ReplayError, match="must be an empty directory"):
        stage_image(tmp_path, f'{BASE}\nCMD ["h.h"]\n')


# ------------------------------------------------------------------------------------ running the image


def test_the_staged_command_runs_the_runtime_client_with_site_packages_off(tmp_path: Path) -> None:
    image = stage_image(tmp_path, f'{BASE}\nENV MINE=1\nCMD ["app.handler"]\n')
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
    image = stage_image(
        tmp_path, f'{BASE}\nENTRYPOINT ["python3", "-m", "awslambdaric"]\nCMD ["app.handler"]\n'
    )
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


PIP_DOCKERFILE = f"""{BASE}
COPY wheels/ /tmp/wheels/
COPY requirements.txt constraints.txt /tmp/req/
RUN pip install --no-index --find-links /tmp/wheels \\
        -r /tmp/req/requirements.txt --target "${{LAMBDA_TASK_ROOT}}"
COPY app.py ${{LAMBDA_TASK_ROOT}}/
CMD ["app.handler"]
"""


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
    image = stage_image(tmp_path, PIP_DOCKERFILE, files)
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

    monkeypatch.setattr(subprocess, "run", recording_run)  # what mdk.local.dockerfile calls
    again = stage_image(tmp_path, PIP_DOCKERFILE, files, stage="stage-2")
    assert not [c for c in commands if "install" in c]
    assert cache_entries(cache) == [key]
    assert os.stat(again.task_root / "tinypkg" / "__init__.py").st_ino == os.stat(installed).st_ino

    # A change in a file the requirements include (-c constraints.txt) is a new layer.
    files["constraints.txt"] = "tinypkg==1.0  # pinned\n"
    stage_image(tmp_path, PIP_DOCKERFILE, files, stage="stage-3")
    assert [c for c in commands if "install" in c]
    assert len(cache_entries(cache)) == 2


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
    error = replay_error(tmp_path, PIP_DOCKERFILE, files)
    assert ":4: RUN: pip install failed" in error
    assert "tinypkg" in error
    assert cache_entries(tmp_path / "cache") == []
    assert not (tmp_path / "stage").exists()  # no half image either
    assert not stale.exists()


@pytest.mark.parametrize(("flag", "expected"), [("", "copied"), ("--upgrade", "VERSION = '1.0'\n")])
def test_pip_keeps_what_the_target_already_holds_unless_upgrading(
    tmp_path: Path, flag: str, expected: str
) -> None:
    make_wheel(tmp_path / "context" / "wheels")
    dockerfile = (
        f"{BASE}\nCOPY wheels/ /tmp/wheels/\nCOPY tinypkg /var/task/tinypkg\n"
        f"RUN pip install {flag} --no-index --find-links /tmp/wheels tinypkg --target /var/task\n"
        'CMD ["app.handler"]\n'
    )
    image = stage_image(tmp_path, dockerfile, {"tinypkg/__init__.py": "copied"})
    assert (image.task_root / "tinypkg" / "__init__.py").read_text() == expected
    assert (image.task_root / "tinypkg-1.0.dist-info").is_dir()


def test_compileall_writes_bytecode_for_copied_sources(tmp_path: Path) -> None:
    image = stage_image(
        tmp_path,
        f"{BASE}\nCOPY pkg /var/task/pkg\n"
        "RUN python -m compileall -q --invalidation-mode unchecked-hash ${LAMBDA_TASK_ROOT}/pkg\n"
        'CMD ["pkg.app.handler"]\n',
        {"pkg/__init__.py": "", "pkg/app.py": "def handler(event, context):\n    return 1\n"},
    )
    compiled = sorted(p.name for p in (image.task_root / "pkg" / "__pycache__").iterdir())
    tag = sys.implementation.cache_tag
    assert compiled == [f"__init__.{tag}.pyc", f"app.{tag}.pyc"]


def test_a_failing_compileall_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(DockerfileError) as info:
        stage_image(
            tmp_path,
            f'{BASE}\nCOPY pkg /var/task/pkg\nRUN python -m compileall -q /var/task/pkg\nCMD ["pkg.app.handler"]\n',
            {"pkg/app.py": "def handler(:\n"},
        )
    assert ":3: RUN: compileall failed" in str(info.value)
