"""The shared runtime on real and hand-built ONNX graphs: what it serves, and what it refuses."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
import pytest

from mdk_runtime.errors import ModelLoadError
from mdk_runtime.media import JSON, NPY
from mdk_runtime.model import default_threads, lambda_vcpus, load_model
from mdk_runtime.service import InferenceService, Reply, Settings, negotiate
from tests import onnx_models
from tests.conftest import ServiceFactory


def post(
    service: InferenceService, doc: Any, content_type: str | None = JSON, accept: str | None = None
) -> Reply:
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return service.predict(body, content_type, accept)


def ok(reply: Reply) -> Any:
    assert reply.status == 200, reply.body
    return orjson.loads(reply.body)


def error(reply: Reply, status: int) -> dict[str, Any]:
    assert reply.status == status, reply.body
    doc = orjson.loads(reply.body)
    assert set(doc) == {"error"}
    return doc["error"]  # type: ignore[no-any-return]


def npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def raw_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------------------
# The example models
# ------------------------------------------------------------------------------------------------


def test_iris_predictions_are_labels_with_probabilities(iris_service: InferenceService) -> None:
    doc = ok(post(iris_service, {"instances": [[6.3, 3.4, 5.6, 2.4], [5.0, 3.4, 1.5, 0.2]]}))
    assert [p["label"] for p in doc["predictions"]] == ["virginica", "setosa"]
    for prediction in doc["predictions"]:
        assert set(prediction["probabilities"]) == {"setosa", "versicolor", "virginica"}
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_iris_matches_raw_onnxruntime(iris_service: InferenceService, iris_bundle: Path) -> None:
    rows = np.random.default_rng(0).uniform(0, 8, size=(64, 4)).astype(np.float32)
    doc = ok(post(iris_service, {"inputs": {"features": rows.tolist()}}))
    label, proba = raw_session(iris_bundle / "model.onnx").run(None, {"features": rows})
    assert doc["outputs"]["label"] == label.tolist()
    np.testing.assert_allclose(np.array(doc["outputs"]["probabilities"]), proba, rtol=1e-6)
    assert doc["labels"] == ["setosa", "versicolor", "virginica"]


def test_held_out_accuracy_in_the_cards_is_what_the_served_model_scores(kit_config: Any) -> None:
    from sklearn.datasets import load_digits, load_iris
    from sklearn.model_selection import train_test_split

    from mdk.examples import EXAMPLES, SEED

    for example in EXAMPLES:
        card = json.loads((example.directory / "card.json").read_text())
        data = load_iris() if example.name == "iris" else load_digits()
        _, x_test, _, y_test = train_test_split(
            data.data.astype(np.float32),
            data.target,
            test_size=0.3 if example.name == "iris" else 0.25,
            stratify=data.target,
            random_state=SEED,
        )
        service = InferenceService.load(Settings(model_dir=example.directory, threads=1))
        doc = ok(post(service, {"inputs": {example.input_name: x_test.tolist()}}))
        accuracy = float(np.mean(np.array(doc["outputs"]["label"]) == y_test))
        assert accuracy == pytest.approx(card["test_accuracy"], abs=1e-4), example.directory
        assert card["test_rows"] == len(y_test)
        assert accuracy > 0.9


# ------------------------------------------------------------------------------------------------
# Any ONNX model
# ------------------------------------------------------------------------------------------------


def test_several_inputs_and_outputs_as_instances_and_as_inputs(service: ServiceFactory) -> None:
    svc = service(onnx_models.two_inputs())
    rows = ok(post(svc, {"instances": [{"a": [1, 2, 3], "b": [1, 1, 1]}, {"a": [0, 0, 0], "b": [1, 2, 3]}]}))
    assert rows["predictions"] == [
        {"sum": [2, 3, 4], "diff": [0, 1, 2]},
        {"sum": [1, 2, 3], "diff": [-1, -2, -3]},
    ]
    cols = ok(post(svc, {"inputs": {"a": [[1, 2, 3]], "b": [[1, 1, 1]]}}))
    assert cols == {"outputs": {"sum": [[2, 3, 4]], "diff": [[0, 1, 2]]}}


def test_int64_inputs_with_shared_symbolic_dimensions(service: ServiceFactory) -> None:
    svc = service(onnx_models.tokens())
    doc = ok(post(svc, {"inputs": {"input_ids": [[101, 2054, 102]], "attention_mask": [[1, 1, 0]]}}))
    assert doc == {"outputs": {"masked": [[101, 2054, 0]]}}
    mismatch = error(post(svc, {"inputs": {"input_ids": [[1, 2, 3]], "attention_mask": [[1, 1, 1, 1]]}}), 422)
    assert mismatch["message"] == "inputs.attention_mask: dimension 'seq' is 4 here but 3 in inputs.input_ids"


def test_float64_int32_bool_and_string_tensors_round_trip(service: ServiceFactory) -> None:
    svc = service(onnx_models.typed())
    instance = {"x64": [0.1, 1e300], "i32": [-(2**31), 2**31 - 1], "flag": True, "text": "héllo"}
    doc = ok(post(svc, {"instances": [instance]}))
    assert doc["predictions"] == [{"x64_out": [0.1, 1e300], "i32_out": [-(2**31), 2**31 - 1],
                                   "flag_out": True, "text_out": "héllo"}]  # fmt: skip


def test_fixed_batch_of_one_accepts_many_instances(service: ServiceFactory, bundle: Any) -> None:
    model = onnx_models.fixed_batch_image()
    svc = service(model)
    assert svc.model is not None
    assert svc.model.signature.batch_size == 1
    images = np.random.default_rng(1).normal(size=(5, 3, 8, 8)).astype(np.float32)
    doc = ok(post(svc, {"instances": images.tolist()}))
    expected = images.mean(axis=(2, 3))
    np.testing.assert_allclose(np.array(doc["predictions"]), expected, rtol=1e-5)


def test_fixed_batch_above_one_pads_the_last_chunk(service: ServiceFactory) -> None:
    svc = service(onnx_models.fixed_batch_two())
    rows = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    doc = ok(post(svc, {"instances": rows}))
    assert doc["predictions"] == [[2, 4, 6], [8, 10, 12], [14, 16, 18]]


def test_real_shufflenet_with_punctuated_names_fixed_batch_and_npy(service: ServiceFactory) -> None:
    path = onnx_models.real_model("light_shufflenet")
    svc = service(path)
    assert svc.model is not None
    assert [s.name for s in svc.model.signature.inputs] == ["gpu_0/data_0"]
    images = np.random.default_rng(2).uniform(size=(3, 3, 224, 224)).astype(np.float32)
    reply = post(svc, npy(images), content_type=NPY, accept=NPY)
    assert reply.status == 200
    assert reply.content_type == NPY
    served = np.load(io.BytesIO(reply.body))
    session = raw_session(path)
    expected = np.concatenate([session.run(None, {"gpu_0/data_0": images[i : i + 1]})[0] for i in range(3)])
    assert served.shape == (3, 1000)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-7)


def test_four_d_images_with_a_dynamic_batch(service: ServiceFactory) -> None:
    svc = service(onnx_models.images())
    images = np.random.default_rng(3).uniform(size=(2, 3, 224, 224)).astype(np.float32)
    doc = ok(post(svc, npy(images), content_type=NPY))
    np.testing.assert_allclose(np.array(doc["outputs"]["means"]), images.mean(axis=(2, 3)), rtol=1e-5)
    wrong = error(post(svc, npy(images[:, :, :100]), content_type=NPY), 422)
    assert wrong["message"] == "body: expected shape [N, 3, 224, 224] (float32), got shape [2, 3, 100, 224]"


def test_model_without_batch_dimension(service: ServiceFactory) -> None:
    svc = service(onnx_models.scalar())
    assert svc.model is not None
    assert not svc.model.signature.batched
    assert ok(post(svc, {"instances": [1.5]})) == {"predictions": [3.0]}
    assert ok(post(svc, {"inputs": {"x": 2.0}})) == {"outputs": {"y": 4.0}}
    two = error(post(svc, {"instances": [1.0, 2.0]}), 422)
    assert "one instance per request" in two["message"]


def test_score_output_with_configured_labels_is_a_classifier(service: ServiceFactory) -> None:
    svc = service(onnx_models.scores(), labels=("cat", "dog", "fish"))
    doc = ok(post(svc, {"instances": [[1, 0, 0, 0]]}))
    scores = doc["predictions"][0]["scores"]
    assert doc["predictions"][0]["label"] == max(scores, key=scores.get)
    assert set(scores) == {"cat", "dog", "fish"}


def test_zipmap_classifier_from_skl2onnx(service: ServiceFactory) -> None:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    clf = LogisticRegression(max_iter=500).fit(data.data, data.target)
    model = to_onnx(
        clf, initial_types=[("x", FloatTensorType([None, 4]))], target_opset={"": 17, "ai.onnx.ml": 3}
    )
    svc = service(model, labels=("setosa", "versicolor", "virginica"))
    doc = ok(post(svc, {"instances": [[5.0, 3.4, 1.5, 0.2]]}))
    assert doc["predictions"][0]["label"] == "setosa"
    assert set(doc["predictions"][0]["probabilities"]) == {"0", "1", "2"}


def test_outputs_that_belong_to_no_instance_are_returned_whole(service: ServiceFactory) -> None:
    svc = service(onnx_models.pooled_scalar())
    doc = ok(post(svc, {"instances": [[1, 2], [3, 4]]}))
    assert doc == {"predictions": [{"y": [1, 2]}, {"y": [3, 4]}], "outputs": {"total": 10.0}}


def test_alias_and_uint8_override(service: ServiceFactory) -> None:
    from mdk_runtime.spec import InputOverride

    svc = service(onnx_models.images(), inputs={"images": InputOverride(alias="pixels", dtype="uint8")})
    pixels = np.full((1, 3, 224, 224), 255, dtype=np.uint8)
    doc = ok(post(svc, npy(pixels), content_type=NPY))
    assert doc["outputs"]["means"] == [[255.0, 255.0, 255.0]]
    above = error(post(svc, {"inputs": {"pixels": np.full((1, 3, 224, 224), 256).tolist()}}), 422)
    assert above["message"].startswith("inputs.pixels[0][0][0][0]: value out of range for uint8 [0, 255]")


# ------------------------------------------------------------------------------------------------
# What is refused, and how
# ------------------------------------------------------------------------------------------------

IRIS_REFUSALS = [
    (
        {"instances": [[1, 2, 3]]},
        422,
        "instances: expected each instance of shape [4] (float32), got shape [3]",
    ),
    ({"instances": [[1, 2, 3, 4], [1, 2, 3]]}, 422, "instances: nested lists are ragged"),
    ({"instances": [[1, 2, "3", 4]]}, 422, "instances[0][2]: expected float32 numbers, got a string"),
    ({"instances": [[1, 2, None, 4]]}, 422, "instances[0][2]: expected float32 numbers, got null"),
    ({"instances": [[1, 2, {"a": 1}, 4]]}, 422, "instances[0][2]: expected float32 numbers, got an object"),
    ({"instances": [[1, 2, 1e39, 4]]}, 422, "instances[0][2]: value out of range for float32"),
    ({"instances": [[True, False, True, True]]}, 422, "instances: expected float32 numbers, got booleans"),
    (
        {"instances": [[[1, 2, 3, 4]]]},
        422,
        "instances: expected each instance of shape [4] (float32), got shape [1, 4]",
    ),
    (
        {"instances": [1, 2, 3, 4]},
        422,
        "instances: expected each instance of shape [4] (float32), got shape []",
    ),
    ({"instances": []}, 422, "instances: no instances; send at least one"),
    ({"instances": "1,2,3,4"}, 400, "instances: expected a list"),
    (
        {"inputs": {"features": [[1, 2, 3, 4]], "extra": [1]}},
        422,
        "inputs: unknown input name (inputs: features)",
    ),
    ({"inputs": {}}, 422, "inputs: missing input 'features' (inputs: features)"),
    ({"predict": [[1, 2, 3, 4]]}, 400, "request body: expected a JSON object with 'instances'"),
    (
        {"instances": [[1, 2, 3, 4]], "inputs": {}},
        400,
        "request body: send either 'instances' or 'inputs', not both",
    ),
    # A bare list is read as instances (the SageMaker SDK's default JSON): a flat one is 4 scalars.
    ([1, 2, 3, 4], 422, "instances: expected each instance of shape [4] (float32), got shape []"),
    ("1,2,3,4", 400, "request body: expected a JSON object"),
    (b'{"instances": [[1, 2, 3, 4]]', 400, "request body is not valid JSON"),
    (b"", 400, "request body is not valid JSON"),
    (b'{"instances": [[NaN, 1, 2, 3]]}', 400, "request body is not valid JSON"),
    (b'{"instances": [[Infinity, 1, 2, 3]]}', 400, "request body is not valid JSON"),
    (b"\xff\xfe{}", 400, "request body is not valid JSON"),
    (b"[" * 5000 + b"]" * 5000, 400, "request body is not valid JSON"),
]


@pytest.mark.parametrize(("doc", "status", "message"), IRIS_REFUSALS)
def test_iris_refusals_name_the_field_and_the_expectation(
    iris_service: InferenceService, doc: Any, status: int, message: str
) -> None:
    err = error(post(iris_service, doc), status)
    assert err["message"].startswith(message), err["message"]


def test_non_finite_numbers_in_npy_are_refused(service: ServiceFactory) -> None:
    svc = service(onnx_models.images())
    images = np.zeros((1, 3, 224, 224), dtype=np.float32)
    images[0, 1, 5, 7] = np.nan
    err = error(post(svc, npy(images), content_type=NPY), 422)
    assert err["message"] == "body[0][1][5][7]: NaN and infinite values are not accepted"
    images[0, 1, 5, 7] = np.inf
    assert error(post(svc, npy(images), content_type=NPY), 422)["message"].startswith("body[0][1][5][7]: NaN")


def test_typed_refusals(service: ServiceFactory) -> None:
    svc = service(onnx_models.typed())
    good = {"x64": [0.0, 1.0], "i32": [1, 2], "flag": True, "text": "a"}
    cases = [
        ({**good, "i32": [1.5, 2]}, "expected an integer (int32), got a fraction"),
        ({**good, "i32": [2**31, 0]}, "value out of range for int32"),
        ({**good, "flag": 1}, "expected booleans (true/false), got numbers"),
        ({**good, "text": 5}, "instances[*].text[0]: expected a string, got a number"),
        ({**good, "i32": [2**70, 0]}, "instances[*].i32[0][0]: value out of range for int32"),
        ({**good, "x64": [1.0, "x"]}, "expected float64 numbers, got a string"),
    ]
    for instance, message in cases:
        err = error(post(svc, {"instances": [instance]}), 422)
        assert message in err["message"], (instance, err)
    missing = error(post(svc, {"instances": [{"x64": [0, 1]}]}), 422)
    assert missing["message"] == "instances[0]: missing input 'i32' (inputs: x64, i32, flag, text)"


def test_errors_never_echo_the_request(iris_service: InferenceService) -> None:
    marker = "SECRET-payload-7f3a"
    for doc in (
        {"instances": [[1, 2, marker, 4]]},
        {marker: 1},
        {"inputs": {marker: [1]}},
        {"instances": [[1, 2, 3, 4]], marker: 2},
    ):
        reply = post(iris_service, doc)
        assert reply.status in (400, 422)
        assert marker.encode() not in reply.body


def test_too_many_instances_and_too_large_bodies(service: ServiceFactory) -> None:
    svc = service(onnx_models.two_inputs(), max_instances=3, max_body_bytes=2000)
    many = {"inputs": {"a": [[0, 0, 0]] * 4, "b": [[0, 0, 0]] * 4}}
    assert "4 instances, the limit is 3" in error(post(svc, many), 413)["message"]
    big = json.dumps({"inputs": {"a": [[0.0, 0.0, 0.0]] * 3, "b": [[0.0] * 3] * 3}}).encode() + b" " * 2000
    err = error(post(svc, big), 413)
    assert "the limit is 2000" in err["message"]
    assert "batch" in err["message"]


def test_content_types_and_accept(iris_service: InferenceService) -> None:
    body = {"instances": [[5.0, 3.4, 1.5, 0.2]]}
    assert post(iris_service, body, content_type=None).status == 200
    assert post(iris_service, body, content_type="application/json; charset=UTF-8").status == 200
    assert error(post(iris_service, body, content_type="text/plain"), 415)["code"] == "unsupported_media_type"
    assert error(post(iris_service, body, content_type="application/x-www-form-urlencoded"), 415)
    latin = error(post(iris_service, body, content_type="application/json; charset=latin-1"), 415)
    assert "UTF-8" in latin["message"]
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8"
    assert post(iris_service, body, accept=browser).content_type == JSON
    assert error(post(iris_service, body, accept="text/csv"), 406)["code"] == "not_acceptable"
    # iris has two outputs (label, probabilities): one .npy tensor cannot carry both
    assert "accept application/json" in error(post(iris_service, body, accept=NPY), 406)["message"]
    npy_body = npy(np.array([[5.0, 3.4, 1.5, 0.2]], dtype=np.float64))
    assert post(iris_service, npy_body, content_type=NPY).status == 200  # float64 cast to float32


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("*/*", JSON),
        ("application/x-npy", NPY),
        ("application/json;q=0.5, application/x-npy", NPY),
        ("application/x-npy;q=0.1, */*", JSON),
        ("*/*, application/x-npy", NPY),
    ],
)
def test_accept_negotiation(accept: str | None, expected: str) -> None:
    assert negotiate(accept) == expected


def test_malformed_npy_bodies(service: ServiceFactory) -> None:
    svc = service(onnx_models.images())
    assert error(post(svc, b"not npy", content_type=NPY), 400)["message"].startswith(
        "request body is not a valid .npy array"
    )
    objects = io.BytesIO()
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert error(post(svc, objects.getvalue(), content_type=NPY), 400)["code"] == "malformed_request"
    two = service(onnx_models.two_inputs())
    assert "carries one tensor" in error(post(two, npy(np.zeros((1, 3))), content_type=NPY), 422)["message"]


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------


def test_a_broken_artifact_gives_a_service_that_answers_503(bundle: Any) -> None:
    directory = bundle(onnx_models.two_inputs())
    (directory / "model.onnx").write_bytes(b"this is not an onnx model")
    svc = InferenceService.load(Settings(model_dir=directory))
    for reply in (svc.health(), svc.metadata(), post(svc, {"instances": [[1, 2, 3]]})):
        err = error(reply, 503)
        assert err["code"] == "model_not_ready"
        assert "onnxruntime cannot load model.onnx" in err["message"]


def test_a_missing_bundle_is_named(tmp_path: Path) -> None:
    svc = InferenceService.load(Settings(model_dir=tmp_path / "nowhere"))
    assert f"no mdk-model.json or model.onnx in {tmp_path / 'nowhere'}" in error(svc.health(), 503)["message"]


def test_unsupported_input_types_are_load_errors(bundle: Any) -> None:
    with pytest.raises(ModelLoadError, match=r"input 'x' has type seq\(tensor\(float\)\)"):
        load_model(bundle(onnx_models.sequence_input()))


def test_a_first_dimension_that_is_not_a_batch_needs_batched_false(bundle: Any) -> None:
    # A real onnx test model: X [2, 3, 4], Y [1, 3, 4], Z [3, 3, 4] share no batch dimension.
    path = onnx_models.ONNX_TEST_DATA / "simple" / "test_sequence_model1" / "model.onnx"
    with pytest.raises(ModelLoadError, match=r"set schema\.batched: false"):
        load_model(bundle(path))
    model, _ = load_model(bundle(path, batched=False))
    assert not model.signature.batched


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"labels": ("a", "b")}, "schema.labels: 2 labels, but output 'logits' has 3 classes"),
        ({"inputs": {"nope": {}}}, "schema.inputs.nope: the model has no such input (inputs: features)"),
        ({"inputs": {"features": {"shape": (None, 5)}}}, "schema.inputs.features.shape[1]: the graph fixes"),
        (
            {"inputs": {"features": {"shape": (None,)}}},
            "schema.inputs.features.shape: the graph's input has rank 2",
        ),
        (
            {"inputs": {"features": {"dtype": "float64"}}},
            "float64 cannot be cast safely to the graph's float32",
        ),
        ({"example": {"instances": [[1, 2]]}}, "warm-up with the spec's example request failed"),
    ],
)
def test_spec_mismatches_are_load_errors(bundle: Any, spec: dict[str, Any], message: str) -> None:
    from mdk_runtime.spec import InputOverride

    if "inputs" in spec:
        spec = {"inputs": {k: InputOverride(**v) for k, v in spec["inputs"].items()}}
    with pytest.raises(ModelLoadError) as info:
        load_model(bundle(onnx_models.scores(), **spec))
    assert message in info.value.message


def test_metadata_and_health(iris_service: InferenceService) -> None:
    meta = ok(iris_service.metadata())
    assert meta["name"] == "iris"
    assert len(meta["artifact_sha256"]) == 64
    assert meta["version"] == meta["artifact_sha256"][:12]
    assert meta["schema"]["inputs"] == [{"name": "features", "dtype": "float32", "shape": [None, 4]}]
    assert meta["schema"]["labels"] == ["setosa", "versicolor", "virginica"]
    assert meta["runtime"]["threads"] == 1
    assert meta["example"]["instances"]
    assert ok(iris_service.health()) == {"status": "ok", "model": "iris", "version": meta["version"],
                                         "warmup": "example"}  # fmt: skip


@pytest.mark.parametrize(
    ("memory", "threads"), [(128, 1), (1024, 1), (1769, 1), (3008, 1), (3538, 2), (7076, 4), (10240, 6)]
)
def test_threads_follow_the_functions_vcpus(memory: int, threads: int) -> None:
    assert lambda_vcpus(memory) == threads
    assert default_threads({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory)}) == threads


def test_thread_and_limit_settings_from_the_environment() -> None:
    assert default_threads({"MDK_ORT_THREADS": "3", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128"}) == 3
    with pytest.raises(ModelLoadError, match="MDK_ORT_THREADS: expected a positive integer, got 'many'"):
        Settings.from_env({"MDK_ORT_THREADS": "many"})
    with pytest.raises(ModelLoadError, match="MDK_MAX_BODY_BYTES: expected a positive integer, got '-1'"):
        Settings.from_env({"MDK_MAX_BODY_BYTES": "-1"})
    settings = Settings.from_env({"MDK_MODEL_DIR": "/var/task/model", "MDK_MAX_BODY_BYTES": "1000"})
    assert settings == Settings(model_dir=Path("/var/task/model"), max_body_bytes=1000)


# ------------------------------------------------------------------------------------------------
# A bare JSON list: the SageMaker Python SDK's default serializer (predictor.predict(X))
# ------------------------------------------------------------------------------------------------


def test_a_bare_list_is_read_as_instances_for_a_single_input_model(iris_service: InferenceService) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4]]
    bare = iris_service.predict(json.dumps(rows).encode(), "application/json", None)
    wrapped = iris_service.predict(json.dumps({"instances": rows}).encode(), "application/json", None)
    assert bare.status == 200, bare.body
    assert bare.body == wrapped.body
    assert bare.instances == 2
    assert [p["label"] for p in json.loads(bare.body)["predictions"]] == ["setosa", "virginica"]


def test_a_bare_list_for_a_model_with_several_inputs_is_refused_with_what_to_send(
    service: ServiceFactory,
) -> None:
    svc = service(onnx_models.two_inputs(), name="pair")
    reply = svc.predict(b'[{"a": [1, 2, 3], "b": [4, 5, 6]}]', "application/json", None)
    err = error(reply, 400)
    assert err["code"] == "malformed_request"
    assert "only for a model with one input" in err["message"]
    assert '{"inputs": {name: tensor, ...}}' in err["message"]
    assert "inputs a, b" in err["message"]


def test_a_failed_synthetic_warm_up_is_degraded_in_health(service: ServiceFactory) -> None:
    from tests.unit.test_synthetic_warmup import reshape_784

    doc = ok(service(reshape_784()).health())
    assert doc["status"] == "degraded"
    assert doc["warmup"] == "failed"
    assert "`example:`" in doc["warmup_error"]
