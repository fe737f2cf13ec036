"""Shared fixtures: model bundles from the real config and from ONNX graphs built in the tests."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest

from mdk.bundle import write_bundle
from mdk.config import KitConfig, load_config
from mdk_runtime.service import InferenceService, Settings
from mdk_runtime.spec import ARTIFACT_FILE, SPEC_FILE, ModelSpec, file_sha256
from tests.events import FakeLambdaContext

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kit_config() -> KitConfig:
    return load_config(REPO / "models.yaml")


@pytest.fixture(scope="session")
def iris_bundle(kit_config: KitConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(kit_config.model("iris"), tmp_path_factory.mktemp("bundles") / "iris")


@pytest.fixture(scope="session")
def iris_service(iris_bundle: Path) -> InferenceService:
    service = InferenceService.load(Settings(model_dir=iris_bundle, threads=1))
    assert service.model is not None, service.load_error
    return service


BundleFactory = Callable[..., Path]
ServiceFactory = Callable[..., InferenceService]


def make_bundle(directory: Path, model: onnx.ModelProto | Path, **spec: Any) -> Path:
    """Write a bundle from a graph (or an .onnx file) and ModelSpec fields (name, labels, inputs...)."""
    directory.mkdir(parents=True, exist_ok=True)
    artifact = directory / ARTIFACT_FILE
    if isinstance(model, Path):
        shutil.copyfile(model, artifact)
    else:
        artifact.write_bytes(model.SerializeToString())
    digest = file_sha256(artifact)
    fields: dict[str, Any] = {"name": "test-model", "version": "1", "sha256": digest, **spec}
    (directory / SPEC_FILE).write_text(json.dumps(ModelSpec(**fields).to_json()))
    return directory


@pytest.fixture
def bundle(tmp_path: Path) -> BundleFactory:
    counter = iter(range(1_000_000))

    def factory(model: onnx.ModelProto | Path, **spec: Any) -> Path:
        return make_bundle(tmp_path / f"bundle-{next(counter)}", model, **spec)

    return factory


@pytest.fixture
def service(bundle: BundleFactory) -> ServiceFactory:
    """Load a service from a graph; ``settings`` keyword overrides limits."""

    def factory(
        model: onnx.ModelProto | Path, *, max_body_bytes: int | None = None, **spec: Any
    ) -> InferenceService:
        directory = bundle(model, **spec)
        settings = Settings(model_dir=directory, threads=1)
        if max_body_bytes is not None:
            settings = Settings(model_dir=directory, threads=1, max_body_bytes=max_body_bytes)
        return InferenceService.load(settings)

    return factory


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite leaves no process behind (issue 13, defect 16): whatever the kit spawned in this run
    (emulators, runtimes, serving containers) must be gone once every fixture is torn down."""
    from mdk.local.processes import leftovers

    left = leftovers()
    if left:
        commands = {}
        for pid in left:
            try:
                commands[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200]
            except OSError:
                commands[pid] = b"?"
        session.config.get_terminal_writer().line(f"processes left behind by the suite: {commands}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
