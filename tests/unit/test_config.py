"""The config file: typed, frozen, and every problem reported at once with its path."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pydantic
import pytest

from mdk.bundle import model_spec, write_bundle
from mdk.config import ConfigError, Consumer, KitConfig, Throttle, load_config, parse_config
from mdk_runtime.spec import SPEC_FILE, read_spec
from tests import onnx_models

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with copies of the example models, where config files are written."""
    shutil.copytree(REPO / "models", tmp_path / "models")
    return tmp_path


def write(workdir: Path, text: str) -> Path:
    path = workdir / "models.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {len(info.value.problems)} problem")
    return info.value.problems


def test_the_repository_config_is_valid() -> None:
    config = load_config(REPO / "models.yaml")
    assert [m.name for m in config.models] == ["iris", "digits"]
    assert config.default.name == "iris"
    iris = config.model("iris")
    assert iris.runtime == "lambda"
    assert iris.lambda_.memory_mb == 1024
    assert iris.lambda_.architecture == "x86_64"
    assert iris.artifact == (REPO / "models/iris/v1/model.onnx").resolve()
    assert config.model("digits").runtime == "sagemaker"


def test_config_objects_are_frozen() -> None:
    config = load_config(REPO / "models.yaml")
    with pytest.raises(pydantic.ValidationError):
        config.models[0].lambda_.memory_mb = 4096  # type: ignore[misc]


def test_defaults_are_filled(workdir: Path) -> None:
    config = load_config(write(workdir, """
        models:
          - name: iris
            artifact: models/iris/v2/model.onnx
            runtime: lambda
    """))  # fmt: skip
    model = config.models[0]
    assert config.project == "mdk"
    assert config.default is model
    assert (model.lambda_.memory_mb, model.lambda_.timeout_s, model.lambda_.architecture) == (
        2048,
        29,
        "x86_64",
    )
    assert model.rollout.strategy == "canary"
    assert model.batch.max_payload_mb == 6


def test_every_problem_is_listed_with_its_path(workdir: Path) -> None:
    found = problems(write(workdir, """
        project: My_Project
        models:
          - name: iris
            artifact: models/iris/v1/model.onnx
            runtime: lambda
            lambda: {memory_mb: 64, architecture: sparc}
          - name: Digits!
            artifact: models/nope/model.onnx
            runtime: gpu
            colour: blue
          - name: iris
            artifact: models/iris/v2/model.onnx
            runtime: lambda
            batch: {max_payload_mb: 50, max_concurrent_transforms: 3}
    """))  # fmt: skip
    assert "models[1].runtime: expected 'lambda' or 'sagemaker', got 'gpu'" in found
    assert "models[1].artifact: file not found: models/nope/model.onnx" in found
    assert "models[0].lambda.memory_mb: expected a value >= 128, got 64" in found
    assert "models[0].lambda.architecture: expected 'x86_64' or 'arm64', got 'sparc'" in found
    assert any(p.startswith("models[1].name: expected a DNS-safe name") and "'Digits!'" in p for p in found)
    assert any(p.startswith("project: expected a DNS-safe name") for p in found)
    assert any(
        p.startswith("models[1].colour: unknown field; expected one of: name, artifact, runtime")
        for p in found
    )
    assert (
        "models[2].batch: max_payload_mb x max_concurrent_transforms must be <= 100 (SageMaker's limit), got 150"
        in found
    )
    assert "models[2].name: duplicate model name 'iris' (also models[0])" in found
    assert len(found) == 9


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("runtime: lambda\n    lambda: {reserved_concurrency: 1, provisioned_concurrency: 2}",
         "models[0].lambda: provisioned_concurrency (2) cannot exceed reserved_concurrency (1)"),
        ("runtime: sagemaker\n    lambda: {memory_mb: 1024}", "models[0]: 'lambda' settings given, but runtime is 'sagemaker'"),
        ("runtime: lambda\n    sagemaker: {instance_type: ml.g4dn.xlarge}",
         "models[0]: 'sagemaker' settings given, but runtime is 'lambda'"),
        ("runtime: lambda\n    lambda: {timeout_s: 901}", "models[0].lambda.timeout_s: expected a value <= 900, got 901"),
        ("runtime: lambda\n    lambda: {memory_mb: lots}",
         "models[0].lambda.memory_mb: expected a valid integer, unable to parse string as an integer, got 'lots'"),
        ("runtime: lambda\n    rollout: {strategy: bluegreen}",
         "models[0].rollout.strategy: expected 'canary', 'linear' or 'all_at_once', got 'bluegreen'"),
        ("runtime: lambda\n    schema: {labels: [a, a]}", "models[0].schema.labels: duplicate label 'a'"),
        ("runtime: lambda\n    schema: {inputs: {'gpu_0/data_0': {shape: [null, 0]}}}",
         "models[0].schema.inputs['gpu_0/data_0'].shape[1]: expected a positive size, a dimension name or null, got 0"),
        ("runtime: lambda\n    version: 'v 1'", "models[0].version: expected letters, digits, '.', '_' or '-' (at most 64), got 'v 1'"),
        ("runtime: lambda\n    example: missing.json", "models[0].example: file not found: missing.json"),
        ("runtime: lambda\n    batch: {instance_type: ml.c6g.xlarge}",
         "models[0].batch: Graviton (arm64) instances are not supported by the serving image: ml.c6g.xlarge"),
        ("runtime: sagemaker\n    sagemaker: {instance_type: ml.m6g.large}",
         "models[0].sagemaker: Graviton (arm64) instances are not supported by the serving image: ml.m6g.large"),
        ("runtime: sagemaker\n    sagemaker: {instance_type: g5.xlarge}",
         "models[0].sagemaker.instance_type: expected a string matching ^ml\\.[a-z0-9]+\\.[a-z0-9]+$, got 'g5.xlarge'"),
    ],
)  # fmt: skip
def test_field_messages(workdir: Path, snippet: str, expected: str) -> None:
    path = write(
        workdir, f"models:\n  - name: iris\n    artifact: models/iris/v1/model.onnx\n    {snippet}\n"
    )
    assert problems(path) == [expected]


def test_top_level_problems(workdir: Path) -> None:
    assert problems(write(workdir, "models: []\n")) == ["models: expected at least 1 item(s)"]
    assert problems(write(workdir, "- a\n- b\n")) == ["expected a mapping with 'models', got list"]
    assert problems(write(workdir, "project: mdk\n")) == ["models: required field is missing"]
    bad_yaml = problems(write(workdir, "models:\n  - name: iris\n   runtime: lambda\n"))
    assert bad_yaml[0].startswith("line 3, column 4: invalid YAML")
    duplicate = problems(write(workdir, "models:\n  - name: iris\n    name: other\n"))
    assert duplicate[0].startswith("line 3, column 5: invalid YAML")
    assert "duplicate key 'name'" in duplicate[0]
    default = problems(write(workdir, """
        default_model: nope
        models:
          - {name: iris, artifact: models/iris/v1/model.onnx, runtime: lambda}
    """))  # fmt: skip
    assert default == ["default_model: no model named 'nope' (models: iris)"]


def test_missing_config_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"config file not found: {tmp_path / 'nope.yaml'}"]


def test_artifacts_are_checked_against_the_graph(workdir: Path) -> None:
    (workdir / "models" / "broken.onnx").write_bytes(b"not a model")
    (workdir / "models" / "tokens.onnx").write_bytes(onnx_models.tokens().SerializeToString())
    found = problems(write(workdir, """
        models:
          - name: iris
            artifact: models/iris/v1/model.onnx
            runtime: lambda
            schema:
              labels: [setosa, versicolor]
              inputs: {feature: {alias: x}}
          - name: broken
            artifact: models/broken.onnx
            runtime: lambda
          - name: tokens
            artifact: models/tokens.onnx
            runtime: lambda
            example: {instances: [{input_ids: [1, 2]}]}
          - name: notonnx
            artifact: models/iris/v1/card.json
            runtime: lambda
    """))  # fmt: skip
    assert "models[0].schema.inputs.feature: the model has no such input (inputs: features)" in found
    assert any(p.startswith("models[1].artifact: onnxruntime cannot load broken.onnx") for p in found)
    assert any(p.startswith("models[2]: warm-up with the spec's example request failed: instances[0]: missing input")
               for p in found)  # fmt: skip
    assert "models[3].artifact: expected an .onnx file, got 'models/iris/v1/card.json'" in found


def test_labels_must_match_the_classifier(workdir: Path) -> None:
    found = problems(write(workdir, """
        models:
          - name: iris
            artifact: models/iris/v1/model.onnx
            runtime: lambda
            schema: {labels: [setosa, versicolor]}
    """))  # fmt: skip
    assert found == ["models[0].schema.labels: 2 labels, but output 'probabilities' has 3 classes"]


def test_bundle_carries_the_spec(tmp_path: Path) -> None:
    config = load_config(REPO / "models.yaml")
    iris = config.model("iris")
    bundle = write_bundle(iris, tmp_path / "iris")
    spec = read_spec(bundle)
    assert spec == model_spec(iris)
    assert spec.labels == ("setosa", "versicolor", "virginica")
    assert spec.example == json.loads((REPO / "models/iris/v1/example.json").read_text())
    assert (bundle / "model.onnx").read_bytes() == iris.artifact.read_bytes()
    before = {p.name: p.stat().st_mtime_ns for p in bundle.iterdir()}
    write_bundle(iris, bundle)  # unchanged: files untouched, so image builds stay cached
    assert {p.name: p.stat().st_mtime_ns for p in bundle.iterdir()} == before
    assert json.loads((bundle / SPEC_FILE).read_text())["version"] == spec.sha256[:12]


def test_kit_config_validates_without_a_file() -> None:
    with pytest.raises(pydantic.ValidationError):
        KitConfig.model_validate({"models": [{"name": "x", "artifact": "nope.onnx", "runtime": "lambda"}]})


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ("api: {auth: cognito}", "api: auth is 'cognito': cognito_user_pool_arn is required"),
        ("api: {auth: oauth}", "api.auth: expected 'iam', 'api_key' or 'cognito', got 'oauth'"),
        (
            "api: {auth: iam, cognito_user_pool_arn: 'arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_x'}",
            "api: cognito_user_pool_arn given, but auth is 'iam'",
        ),
        ("api: {throttle_rate: 0}", "api.throttle_rate: expected a value >= 1, got 0"),
        ("alarms: {email: not-an-address}", "alarms.email: expected a string matching"),
    ],
)
def test_api_and_alarm_settings(workdir: Path, top: str, expected: str) -> None:
    path = write(
        workdir, f"{top}\nmodels:\n  - {{name: iris, artifact: models/iris/v1/model.onnx, runtime: lambda}}\n"
    )
    found = problems(path)
    assert len(found) == 1
    assert found[0].startswith(expected), found


def test_rollout_thresholds(workdir: Path) -> None:
    config = load_config(write(workdir, """
        models:
          - name: iris
            artifact: models/iris/v1/model.onnx
            runtime: lambda
            rollout: {strategy: linear, percent: 20, interval_minutes: 2, max_errors: 5, p99_latency_ms: 300}
    """))  # fmt: skip
    rollout = config.models[0].rollout
    assert (rollout.strategy, rollout.percent, rollout.interval_minutes) == ("linear", 20, 2)
    assert (rollout.max_errors, rollout.p99_latency_ms) == (5, 300)
    assert config.api.auth == "iam"


# ------------------------------------------------------------------------------------------------
# Per-model access: consumers and throttles (api.consumers, models[].throttle)
# ------------------------------------------------------------------------------------------------

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_x"


def access_problems(api: Mapping[str, object], *, models: int = 2, throttle: object = None) -> list[str]:
    """Problems of a config of ``models`` copies of iris (artifacts are not loaded: access only)."""
    entries: list[dict[str, object]] = [
        {"name": f"m{i}", "artifact": "models/iris/v1/model.onnx", "runtime": "lambda"} for i in range(models)
    ]
    if throttle is not None:
        entries[0]["throttle"] = throttle
    with pytest.raises(ConfigError) as info:
        parse_config({"api": api, "models": entries}, base_dir=REPO, check_models=False)
    return info.value.problems


def access_config(api: Mapping[str, object], *, models: int = 2) -> KitConfig:
    entries = [
        {"name": f"m{i}", "artifact": "models/iris/v1/model.onnx", "runtime": "lambda"} for i in range(models)
    ]
    return parse_config({"api": api, "models": entries}, base_dir=REPO, check_models=False)


def test_a_consumer_names_models_that_exist() -> None:
    found = access_problems(
        {
            "auth": "api_key",
            "consumers": [{"name": "a", "models": ["m0"]}, {"name": "b", "models": ["m1", "m9"]}],
        }
    )
    assert found == ["api.consumers[1].models[1]: no model named 'm9' (models: m0, m1)"]


def test_consumer_names_and_their_models_are_unique() -> None:
    found = access_problems(
        {"auth": "api_key", "consumers": [{"name": "a", "models": ["m0"]}, {"name": "a", "models": ["m1"]}]}
    )
    assert found == ["api.consumers[1].name: duplicate consumer name 'a' (also api.consumers[0])"]
    found = access_problems({"auth": "api_key", "consumers": [{"name": "a", "models": ["m0", "m1", "m0"]}]})
    assert found == ["api.consumers[0].models[2]: 'm0' is listed twice"]


def test_iam_refuses_consumers_and_points_at_the_policies() -> None:
    [found] = access_problems({"auth": "iam", "consumers": [{"name": "a", "models": ["m0"]}]})
    assert found.startswith("api.consumers: not with auth 'iam'")
    assert "per-model managed policies" in found


def test_api_key_consumers_are_usage_plans_300_per_region() -> None:
    consumers = [{"name": f"c{i}", "models": ["m0"]} for i in range(301)]
    [found] = access_problems({"auth": "api_key", "consumers": consumers})
    assert found.startswith("api.consumers: at most 300 with auth 'api_key'")
    assert "usage plans per account per Region" in found
    assert "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html" in found
    assert found.endswith("got 301")
    assert len(access_config({"auth": "api_key", "consumers": consumers[:300]}).consumers) == 300


def test_cognito_has_one_scope_per_model_100_per_resource_server() -> None:
    api = {"auth": "cognito", "cognito_user_pool_arn": POOL}
    [found] = access_problems(api, models=101)
    assert found.startswith("models: at most 100 with api.auth 'cognito'")
    assert "API_CreateResourceServer.html" in found
    assert found.endswith("got 101")
    assert len(access_config(api, models=100).models) == 100


def test_a_cognito_consumer_reaches_at_most_50_models() -> None:
    models = [f"m{i}" for i in range(51)]
    api = {"auth": "cognito", "cognito_user_pool_arn": POOL, "consumers": [{"name": "a", "models": models}]}
    [found] = access_problems(api, models=51)
    assert found.startswith("api.consumers[0].models: at most 50 with auth 'cognito'")
    assert "API_CreateUserPoolClient.html" in found


def test_cognito_consumers_have_no_usage_plan_settings() -> None:
    api = {
        "auth": "cognito",
        "cognito_user_pool_arn": POOL,
        "consumers": [{"name": "a", "models": ["m0"], "burst": 5}],
    }
    assert access_problems(api) == [
        "api.consumers[0].burst: applies with auth 'api_key' only (a usage plan's throttle and quota); "
        "with auth 'cognito' each model's throttle applies"
    ]


def test_consumer_settings_are_checked_field_by_field() -> None:
    found = access_problems(
        {"auth": "api_key", "consumers": [{"name": "A", "models": [], "rate": 0, "keys": 1}]}
    )
    assert found[0].startswith("api.consumers[0].name: expected a DNS-safe name")
    assert found[1:] == [
        "api.consumers[0].models: expected at least 1 item(s)",
        "api.consumers[0].rate: expected a value >= 1, got 0",
        "api.consumers[0].keys: unknown field; expected one of: name, models, rate, burst, quota_per_day",
    ]


def test_a_model_throttle_is_checked() -> None:
    assert access_problems({}, throttle={"rate": 0, "burst": 6000}) == [
        "models[0].throttle.rate: expected a value >= 1, got 0",
        "models[0].throttle.burst: expected a value <= 5000, got 6000",
    ]


def test_without_consumers_api_keys_keep_one_default_consumer_of_every_model() -> None:
    config = access_config(
        {"auth": "api_key", "throttle_rate": 20, "throttle_burst": 40, "quota_per_day": 500}
    )
    assert config.consumers == [
        Consumer(name="default", models=("m0", "m1"), rate=20, burst=40, quota_per_day=500)
    ]
    assert access_config({}).consumers == []  # iam: identities, not consumers
    assert access_config({"auth": "cognito", "cognito_user_pool_arn": POOL}).consumers == []


def test_consumers_and_throttles_take_the_api_defaults() -> None:
    config = access_config(
        {
            "auth": "api_key",
            "throttle_rate": 20,
            "throttle_burst": 40,
            "consumers": [
                {"name": "a", "models": ["m1"], "rate": 5, "quota_per_day": 9},
                {"name": "b", "models": ["m0"]},
            ],
        }
    )
    assert config.consumers == [
        Consumer(name="a", models=("m1",), rate=5, burst=40, quota_per_day=9),
        Consumer(name="b", models=("m0",), rate=20, burst=40, quota_per_day=None),
    ]
    assert config.throttle(config.models[0]) == Throttle(rate=20, burst=40)
    throttled = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "artifact": "models/iris/v1/model.onnx",
                    "runtime": "lambda",
                    "throttle": {"rate": 3, "burst": 4},
                }
            ]
        },
        base_dir=REPO,
        check_models=False,
    )
    assert throttled.throttle(throttled.models[0]) == Throttle(rate=3, burst=4)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("runtime: lambda\n    capture: {percent: 101}", "models[0].capture.percent: expected a value <= 100, got 101"),
        ("runtime: lambda\n    capture: {percent: 5, drop_fields: [email, email]}",
         "models[0].capture.drop_fields[1]: 'email' is listed twice"),
        ("runtime: lambda\n    capture: {percent: 5, drop_fields: ['e-mail']}",
         "models[0].capture.drop_fields[0]: expected a string matching ^[A-Za-z_][A-Za-z0-9_]{0,63}$, got 'e-mail'"),
        ("runtime: lambda\n    capture: {retention_days: 0}",
         "models[0].capture.retention_days: expected a value >= 1, got 0"),
        ("runtime: sagemaker\n    capture: {percent: 2.5}",
         "models[0].capture.percent: SageMaker samples whole percents (InitialSamplingPercentage), got 2.5"),
        ("runtime: sagemaker\n    capture: {percent: 5, drop_fields: [email]}",
         "models[0].capture.drop_fields: SageMaker endpoints capture natively and cannot drop fields; remove "
         "them, or serve the model on lambda"),
        ("runtime: sagemaker\n    sagemaker: {data_capture_percent: 20}\n    capture: {percent: 10}",
         "models[0]: sagemaker.data_capture_percent (20) and capture.percent (10.0) disagree: set "
         "capture.percent only (data_capture_percent is its old name)"),
        ("runtime: lambda\n    monitor: {accuracy_floor: 0.9}",
         "models[0].monitor: needs capture.percent > 0 (the job reads the captured predictions)"),
        ("runtime: lambda\n    capture: {percent: 5}\n    monitor: {accuracy_floor: 0.9, mae_ceiling: 2}",
         "models[0].monitor: accuracy_floor is for classifiers and mae_ceiling for regressors: set one of them"),
        ("runtime: lambda\n    capture: {percent: 5}\n    monitor: {baseline: nope.json}",
         "models[0].monitor.baseline: file not found: nope.json (write it with `mdk baseline <model> <data>`)"),
        ("runtime: lambda\n    capture: {percent: 5}\n    monitor: {baseline: models/iris/v1/example.json}",
         "models[0].monitor.baseline: computed for model None, not 'iris' (write it with `mdk baseline iris <data>`)"),
        ("runtime: lambda\n    capture: {percent: 5}\n    monitor: {every_minutes: 0}",
         "models[0].monitor.every_minutes: expected a value >= 1, got 0"),
        ("runtime: lambda\n    capture: {percent: 5}\n    monitor: {mae_ceiling: 0.5}",
         "models[0].monitor.mae_ceiling: the model is a classifier; use accuracy_floor"),
    ],
)  # fmt: skip
def test_capture_and_monitor_messages(workdir: Path, snippet: str, expected: str) -> None:
    path = write(
        workdir, f"models:\n  - name: iris\n    artifact: models/iris/v1/model.onnx\n    {snippet}\n"
    )
    assert problems(path) == [expected]


def test_capture_takes_the_old_sagemaker_setting_and_monitor_its_defaults(workdir: Path) -> None:
    path = write(
        workdir,
        """\
        models:
          - name: digits
            artifact: models/digits/v1/model.onnx
            runtime: sagemaker
            sagemaker: {data_capture_percent: 20}
          - name: iris
            artifact: models/iris/v1/model.onnx
            runtime: lambda
            capture: {percent: 12.5, drop_fields: [email]}
            monitor: {accuracy_floor: 0.8}
        """,
    )
    config = load_config(path)
    assert config.model("digits").capture_percent == 20
    iris = config.model("iris")
    assert iris.capture_percent == 12.5
    assert iris.capture.drop_fields == ["email"]
    assert iris.capture.retention_days == 90
    assert iris.monitor is not None
    assert (iris.monitor.every_minutes, iris.monitor.window_hours) == (60, 24)
    assert (iris.monitor.min_feedback, iris.monitor.drift_threshold) == (20, 0.2)
    assert iris.monitor.baseline is None


def test_a_regressor_is_watched_by_mae_not_accuracy(workdir: Path) -> None:
    (workdir / "reg.onnx").write_bytes(onnx_models.scores(1).SerializeToString())  # one score: no labels
    path = write(
        workdir,
        """\
        models:
          - name: reg
            artifact: reg.onnx
            runtime: lambda
            capture: {percent: 5}
            monitor: {accuracy_floor: 0.8}
        """,
    )
    assert problems(path) == [
        "models[0].monitor.accuracy_floor: the model is not a classifier (no labels or class scores); use "
        "mae_ceiling for a regressor"
    ]
