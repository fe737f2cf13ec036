"""100 models in one deployment (issue 16): 70 Lambda and 30 SageMaker copies of the repository's example
models synthesize, cdk-nag on, into one shared stack and one stack per model, every template inside
every AWS limit that stacks.limits checks. The Lambda copies alternate the iris and digits examples (digits
with iris's Lambda settings); the SageMaker copies are the digits example as models.yaml has it."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
import yaml

from stacks.limits import check_assembly, usage
from tests.infra.conftest import REPO, Synth, synth_config, write_config

LAMBDA_MODELS = 70
SAGEMAKER_MODELS = 30
MODEL_STACK_CEILING = 100  # a fifth of CloudFormation's 500: a model stack must stay far inside it


def scale_config(lambdas: int, sagemakers: int) -> tuple[str, dict[str, str]]:
    """The config's text (artifact paths as ``MODELS/...``, for write_config) and each model's runtime."""
    document = yaml.safe_load((REPO / "models.yaml").read_text())
    examples = {model["name"]: model for model in document["models"]}
    iris, digits = examples["iris"], examples["digits"]
    assert (iris["runtime"], digits["runtime"]) == ("lambda", "sagemaker")

    def relocated(model: dict[str, Any]) -> dict[str, Any]:
        model = copy.deepcopy(model)
        for key in ("artifact", "example"):
            if isinstance(model.get(key), str):
                model[key] = "MODELS/" + model[key].removeprefix("models/")
        return model

    digits_on_lambda = relocated(digits)
    digits_on_lambda.pop("sagemaker", None)
    digits_on_lambda["runtime"] = "lambda"
    for key in ("lambda", "rollout", "batch"):
        if key in iris:
            digits_on_lambda[key] = copy.deepcopy(iris[key])
    models: list[dict[str, Any]] = []
    for index in range(lambdas):
        base, stem = (relocated(iris), "iris") if index % 2 == 0 else (digits_on_lambda, "digits")
        models.append({**copy.deepcopy(base), "name": f"{stem}-l{index:03d}"})
    models += [{**relocated(digits), "name": f"digits-sm{index:03d}"} for index in range(sagemakers)]
    document.update(models=models, default_model=models[0]["name"])
    return yaml.safe_dump(document, sort_keys=False), {m["name"]: m["runtime"] for m in models}


@pytest.fixture(scope="module")
def hundred(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synth, dict[str, str]]:
    directory = tmp_path_factory.mktemp("synth-100-models")
    text, runtimes = scale_config(LAMBDA_MODELS, SAGEMAKER_MODELS)
    return synth_config(write_config(directory, text), directory / "out"), runtimes


def kinds(template: dict[str, Any]) -> Counter[str]:
    return Counter(resource["Type"] for resource in template["Resources"].values())


def test_every_template_is_inside_every_limit(hundred: tuple[Synth, dict[str, str]]) -> None:
    synth, _ = hundred
    assert check_assembly(synth.outdir) == []
    assert check_assembly(synth.json) == []  # the same templates, as the dict the checks also take


def test_one_shared_stack_and_one_stack_per_model(hundred: tuple[Synth, dict[str, str]]) -> None:
    synth, runtimes = hundred
    prefix = f"{synth.config.project}-dev"
    assert len(runtimes) == LAMBDA_MODELS + SAGEMAKER_MODELS
    assert set(synth.json) == {f"{prefix}-shared"} | {f"{prefix}-model-{name}" for name in runtimes}
    assert kinds(synth.shared_json)["AWS::ApiGateway::RestApi"] == 0
    for name, runtime in runtimes.items():
        found = kinds(synth.model_json(name))
        assert found["AWS::ApiGateway::RestApi"] == 1, name  # each model its own REST API
        if runtime == "lambda":
            assert (found["AWS::Lambda::Alias"], found["AWS::SageMaker::Endpoint"]) == (1, 0), name
        else:
            assert (found["AWS::SageMaker::Endpoint"], found["AWS::Lambda::Alias"]) == (1, 0), name


def test_each_model_stack_stays_far_inside_500_resources(hundred: tuple[Synth, dict[str, str]]) -> None:
    synth, runtimes = hundred
    counts = {name: len(synth.model_json(name)["Resources"]) for name in runtimes}
    by_runtime = {
        runtime: sorted({count for name, count in counts.items() if runtimes[name] == runtime})
        for runtime in ("lambda", "sagemaker")
    }
    print(f"resources per model stack: {by_runtime}; shared: {len(synth.shared_json['Resources'])}")
    assert max(counts.values()) <= MODEL_STACK_CEILING, by_runtime


def test_the_headroom_is_reported_for_every_stack(hundred: tuple[Synth, dict[str, str]]) -> None:
    """What make bench prints: one count per stack and limit, fullest first, every one under its limit."""
    synth, _ = hundred
    found = usage(synth.outdir)
    assert {u.stack for u in found if u.limit == "resources_per_template"} == set(synth.json)
    assert found[0].fraction == max(u.fraction for u in found) <= 1
    print("fullest:", ", ".join(f"{u.stack} {u.limit} {u.count}/{u.value}" for u in found[:5]))
