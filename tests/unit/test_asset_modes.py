"""Defect 1 of issue 13: every file the kit writes into an image context, a bundle, a zip function or a
model archive is world-readable (0644, directories 0755), whatever the umask of the process writing it.

Docker's COPY keeps a file's mode and Lambda runs a container image's function as a non-root user, so a
0600 file (what ``mkstemp`` creates) cannot be read at init on AWS. tests/e2e/test_lambda_user.py shows the
consequence under the local runner's unprivileged user.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mdk.bundle import (
    HANDLERS_DIR,
    write_batch_function_context,
    write_batch_layer,
    write_bundle,
    write_function_context,
    write_image_context,
    write_model_tarball,
)
from mdk.config import KitConfig


@pytest.fixture
def strict_umask() -> Iterator[None]:
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in sorted(root.rglob("*")):
        found[path.relative_to(root).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return found


def assert_world_readable(root: Path) -> None:
    wrong = {
        rel: oct(mode)
        for rel, mode in modes(root).items()
        if mode != (0o755 if (root / rel).is_dir() else 0o644)
    }
    assert not wrong, f"not 0644/0755 under {root}: {wrong}"


@pytest.mark.usefixtures("strict_umask")
def test_image_contexts_and_bundles_are_world_readable_under_umask_077(
    kit_config: KitConfig, tmp_path: Path
) -> None:
    iris = kit_config.model("iris")
    context = write_image_context(iris, tmp_path / "images" / "iris")
    assert (context / "Dockerfile").is_file()
    assert (context / "model" / "model.onnx").is_file()
    assert_world_readable(context)
    assert_world_readable(write_bundle(iris, tmp_path / "bundle"))
    assert_world_readable(
        write_function_context(
            {"lambda_handlers/__init__.py": HANDLERS_DIR / "__init__.py"}, tmp_path / "zip"
        )
    )
    assert_world_readable(write_batch_function_context(tmp_path / "functions"))
    assert_world_readable(write_batch_layer(tmp_path / "layer"))


@pytest.mark.usefixtures("strict_umask")
def test_the_sagemaker_model_archive_is_world_readable_under_umask_077(
    kit_config: KitConfig, tmp_path: Path
) -> None:
    tarball = write_model_tarball(kit_config.model("iris"), tmp_path / "model" / "model.tar.gz")
    assert stat.S_IMODE(tarball.stat().st_mode) == 0o644
    with tarfile.open(tarball) as tar:
        assert {m.name: m.mode for m in tar.getmembers()} == {"mdk-model.json": 0o644, "model.onnx": 0o644}


def test_files_an_older_kit_wrote_0600_are_made_readable_without_rewriting(
    kit_config: KitConfig, tmp_path: Path
) -> None:
    context = write_image_context(kit_config.model("iris"), tmp_path / "iris")
    stale = [p for p in context.rglob("*") if p.is_file()]
    for path in stale:
        path.chmod(0o600)
    write_image_context(kit_config.model("iris"), context)
    assert_world_readable(context)


def test_the_cdk_apps_asset_directories_are_searchable_under_umask_077(tmp_path: Path) -> None:
    """The directories CDK itself creates under cdk.out (asset.*, their subdirectories) come from its
    Node process, which inherits app.py's umask: with 077 they were 0700, unreadable in the image."""
    import json
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    context = json.loads((repo / "cdk.json").read_text())["context"]
    env = {
        **os.environ,
        "CDK_OUTDIR": str(tmp_path / "out"),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "PATH": f"{repo / 'node_modules' / '.bin'}{os.pathsep}{os.environ['PATH']}",
    }
    done = subprocess.run(
        [sys.executable, "app.py"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        umask=0o077,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assets = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("asset.") and p.is_dir()]
    assert assets
    closed = {
        str(d.relative_to(tmp_path)): oct(stat.S_IMODE(d.stat().st_mode))
        for asset in assets
        for d in (asset, *asset.rglob("*"))
        if d.is_dir() and stat.S_IMODE(d.stat().st_mode) & 0o055 != 0o055
    }
    assert not closed, closed
