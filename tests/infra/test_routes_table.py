"""The synthesized REST API has exactly the routes of the route table (mdk_runtime.routes), for every
model of every config; the pre-traffic hook's zip carries the table it builds its events from."""

from __future__ import annotations

from pathlib import Path

import pytest

from mdk_runtime import routes
from tests.infra.conftest import Synth
from tests.template_events import routes as template_routes


@pytest.mark.parametrize("synth", ["synth_repo_config", "synth_variant", "synth_sagemaker"])
def test_the_apis_methods_are_the_route_tables(synth: str, request: pytest.FixtureRequest) -> None:
    synthesized: Synth = request.getfixturevalue(synth)
    expected: set[tuple[str, str]] = set()
    for model in synthesized.config.models:
        expected |= routes.api_routes(model.name, model.runtime, store=model.batch.store is not None)
    defined = {(r.path, r.verb) for r in template_routes(synthesized.merged_json) if r.verb != "OPTIONS"}
    assert defined == expected


def test_the_table_spells_the_routes_the_readme_documents() -> None:
    assert routes.api_routes("iris", "lambda", store=True) == {
        ("/models/iris/predict", "POST"),
        ("/models/iris/metadata", "GET"),
        ("/models/iris/health", "GET"),
        ("/models/iris/predictions/{id}", "GET"),
    }
    assert routes.api_routes("digits", "sagemaker", store=False) == {("/models/digits/predict", "POST")}
    assert routes.match("/models/iris/health", "iris") == "health"
    assert routes.match("/predict", "iris") == "predict"
    assert routes.match("/models/other/predict", "iris") is None
    assert routes.match("/models/other/predict", None) == "predict"
    assert routes.match("/models/iris/predictions/x", "iris") is None
    assert routes.stored_model("/models/iris/predictions/{id}") == "iris"
    assert routes.stored_model("/models/iris/predict") is None


def test_the_hooks_zip_holds_the_route_table(synth_repo_config: Synth) -> None:
    code = synth_repo_config.outdir / "build" / "mdk-dev" / "functions" / "rollout-hooks"
    assert sorted(p.name for p in (code / "mdk_runtime").iterdir()) == ["__init__.py", "routes.py"]
    assert (code / "mdk_runtime" / "routes.py").read_bytes() == Path(routes.__file__).read_bytes()
