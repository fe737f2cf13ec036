"""The kit installed from its wheel, as a user's project uses it: `mdk --help`, `mdk config validate` and
`cdk synth` from a virtual environment that has the kit only from the wheel, in a directory outside the
checkout.

The environment is new (``python -m venv``) and gets the kit from the wheel alone; its third-party
dependencies are this checkout's locked environment, reached through a ``.pth`` line (a directory named
in a ``.pth`` file is not scanned for ``.pth`` files itself, so the checkout's editable install of the kit
is not seen). Installing every pinned dependency afresh would take minutes and prove pip, not the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"$ {' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the tracked tree: what a release builds from, without this checkout's build outputs.
    source = out / "source"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = REPO / name.decode()
        if path.is_file():
            target = source / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(source),
            "-w",
            str(out),
        ],
        cwd=out,
        env=dict(os.environ),
    )
    (built,) = out.glob("mdk-*.whl")
    return built


def test_the_wheel_holds_every_package_and_the_files_synth_copies(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("mdk/ops", "mdk/local/cloud", "mdk/images", "mdk_runtime", "lambda_handlers", "stacks"):
        assert f"{package}/__init__.py" in names, package
    assert "lambda_handlers/Dockerfile" in names
    assert "sagemaker_endpoints/Dockerfile" in names
    assert "sagemaker_endpoints/requirements-cpu.txt" in names
    data = [n for n in names if ".data/data/share/mdk/layers/" in n]
    assert sorted(Path(n).name for n in data) == [
        "constraints.txt",
        "requirements-processing.txt",
        "requirements.txt",
    ]


def test_an_installed_kit_validates_and_synthesizes_a_project(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "kit-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(venv / "bin"), str(REPO / "node_modules" / ".bin"), os.environ["PATH"]]),
        "PYTHONPATH": "",
    }
    env.pop("VIRTUAL_ENV", None)
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        cwd=tmp_path,
        env=env,
    )

    project = tmp_path / "project"  # a user's project: a config, its models, a cdk.json; no kit sources
    project.mkdir()
    shutil.copy(REPO / "models.yaml", project / "models.yaml")
    for model in ("iris", "digits"):
        shutil.copytree(REPO / "models" / model, project / "models" / model)
    context = json.loads((REPO / "cdk.json").read_text())["context"]
    (project / "cdk.json").write_text(json.dumps({"app": "python -m mdk.app", "context": context}))

    where = run(
        [str(python), "-c", "import mdk, stacks; print(mdk.__file__); print(stacks.__file__)"],
        cwd=project,
        env=env,
    )
    assert all(line.startswith(str(purelib)) for line in where.split()), (
        where
    )  # the wheel's, not the checkout's

    assert "Usage: mdk" in run([str(venv / "bin" / "mdk"), "--help"], cwd=project, env=env)
    assert "valid" in run([str(venv / "bin" / "mdk"), "config", "validate"], cwd=project, env=env)

    run(["cdk", "synth", "--quiet", "--output", str(project / "cdk.out")], cwd=project, env=env)
    templates = sorted((project / "cdk.out").glob("*.template.json"))
    assert templates, "no template synthesized"
    assert any(t.name.endswith("-shared.template.json") for t in templates)  # and one stack per model
    functions = [
        r
        for t in templates
        for r in json.loads(t.read_text())["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function"
    ]
    assert functions
    # The images' contexts are written into the project, made of the installed kit's files.
    contexts = project / "build" / "cdk"
    dockerfiles = list(contexts.rglob("Dockerfile"))
    assert dockerfiles
    assert not (purelib / "build").exists()
    lambda_context = next(d.parent for d in dockerfiles if (d.parent / "model").is_dir())
    assert (lambda_context / "layers" / "requirements.txt").read_bytes() == (
        REPO / "layers" / "requirements.txt"
    ).read_bytes()
