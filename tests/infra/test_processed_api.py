"""The REST API in front of models with processing, checked on the synthesized template: their raw bodies are
binary media types (base64 in the Lambda event, bytes to SageMaker), their JSON request models take the
processed interface (instances of strings, ``{"b64": ...}`` objects, or any JSON for a handler), and the
WAF's Lambda payload rule counts every binary type's base64 growth."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mdk.config import KitConfig, parse_config
from stacks.model_api import binary_media_types as api_binary_types
from tests.infra.conftest import REPO, Synth, synth_config
from tests.template_events import GatewayRefusal, binary_media_types, check_body, rest_event, routes

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\xff\xfe"
B64 = base64.b64encode(PNG).decode()


def processed_config(directory: Path) -> KitConfig:
    (directory / "tokenizer.json").write_text("{}")
    (directory / "handler.py").write_text("def preprocess(instance, context):\n    return instance\n")
    models = REPO / "models"
    return parse_config(
        {
            "project": "proc",
            "api": {"waf": True},
            "models": [
                {
                    "name": "tensors",
                    "artifact": str(models / "iris" / "v2" / "model.onnx"),
                    "runtime": "lambda",
                    "batch": {"enabled": False},
                },
                {
                    "name": "images",
                    "artifact": str(models / "digits" / "v1" / "model.onnx"),
                    "runtime": "lambda",
                    "processing": {"image": {"channels": "L", "resize": {"width": 8, "height": 8}}},
                    "batch": {"enabled": False},
                },
                {
                    "name": "texts",
                    "artifact": str(models / "iris" / "v2" / "model.onnx"),
                    "runtime": "lambda",
                    "processing": {"text": {"tokenizer": "tokenizer.json"}},
                    "batch": {"enabled": False},
                },
                {
                    "name": "bytes",
                    "artifact": str(models / "iris" / "v2" / "model.onnx"),
                    "runtime": "sagemaker",
                    "sagemaker": {"instance_type": "ml.m5.large"},
                    "processing": {
                        "handler": "handler.py",
                        "content_types": ["application/octet-stream", "audio/*"],
                    },
                    "batch": {"enabled": False},
                },
            ],
        },
        base_dir=directory,
        check_models=False,
    )


@pytest.fixture(scope="module")
def synth_processed(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    directory = tmp_path_factory.mktemp("synth-processed")
    return synth_config(processed_config(directory), directory / "out")


def predict_path(name: str) -> str:
    return f"/models/{name}/predict"


def test_the_binary_media_types_are_npy_and_what_the_model_takes(synth_processed: Synth) -> None:
    # each model's own API: .npy, and the raw bodies of its own processing
    assert {
        m.name: binary_media_types(synth_processed.model_json(m.name)) for m in synth_processed.config.models
    } == {
        "tensors": ["application/x-npy"],
        "images": ["application/x-npy", "image/jpeg", "image/png", "image/webp", "multipart/form-data"],
        "texts": ["application/x-npy", "text/plain"],
        "bytes": ["application/x-npy", "application/octet-stream", "audio/*"],
    }


def test_without_processing_only_npy_is_binary(synth_variant: Synth) -> None:
    for model in synth_variant.config.models:
        assert binary_media_types(synth_variant.model_json(model.name)) == ["application/x-npy"]


def test_a_type_covering_json_is_refused_naming_the_model(tmp_path: Path) -> None:
    config = processed_config(tmp_path)
    handler = config.models[3]
    assert handler.processing is not None
    processing = handler.processing.model_copy(update={"content_types": ["application/*"]})
    wild = handler.model_copy(update={"processing": processing})
    with pytest.raises(ValueError, match=r"^models\[1\]\.processing\.content_types: 'application/\*' covers"):
        api_binary_types([config.models[0], wild])


def test_a_raw_image_reaches_the_function_base64_encoded(synth_processed: Synth) -> None:
    template = synth_processed.merged_json
    event = rest_event(template, "POST", predict_path("images"), PNG, {"Content-Type": "image/png"})
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == PNG
    # JSON stays text.
    event = rest_event(template, "POST", predict_path("images"), json.dumps({"instances": [B64]}))
    assert event["isBase64Encoded"] is False


IMAGE_PASSES: tuple[Any, ...] = (
    {"instances": [B64]},
    {"instances": [{"b64": B64}, B64]},
    [B64],
    [{"b64": B64}],
)
IMAGE_REFUSED: tuple[Any, ...] = (
    {"instances": []},
    [],
    {"instances": [[1, 2, 3]]},  # a tensor row: not what a processed model reads
    {"instances": [{"b64": 3}]},
    {"instances": [{"b64": B64, "more": 1}]},
    {"instances": [{"image": B64}]},
    {"inputs": {"pixels": [[0] * 64]}},
    {"instances": [B64], "inputs": []},
    "just a string",
)


@pytest.mark.parametrize("name", ["images", "texts"])
def test_a_processed_models_json_takes_strings_and_b64_objects(synth_processed: Synth, name: str) -> None:
    template = synth_processed.merged_json
    for body in (*IMAGE_PASSES, {"instances": ["a text", "another"]}):
        check_body(template, "POST", predict_path(name), json.dumps(body).encode(), "application/json")
    for body in IMAGE_REFUSED:
        with pytest.raises(GatewayRefusal):
            check_body(template, "POST", predict_path(name), json.dumps(body).encode(), "application/json")


def test_a_handler_models_instances_may_be_any_json(synth_processed: Synth) -> None:
    """The handler model is on SageMaker: its route is an AWS integration with the same validator."""
    template = synth_processed.merged_json
    for body in (
        {"instances": [{"audio": B64, "rate": 16000}, [1, 2], 3, None, "x"]},
        [{"anything": True}],
    ):
        check_body(template, "POST", predict_path("bytes"), json.dumps(body).encode(), "application/json")
    refused: tuple[Any, ...] = ({"instances": []}, {"rows": [1]}, {"inputs": [[1.0]]}, "text")
    for wrong in refused:
        with pytest.raises(GatewayRefusal):
            check_body(
                template, "POST", predict_path("bytes"), json.dumps(wrong).encode(), "application/json"
            )


def test_raw_bodies_are_not_validated(synth_processed: Synth) -> None:
    """API Gateway validates a body against the model for its content type only: raw ones pass."""
    template = synth_processed.merged_json
    for name, content_type, body in (
        ("images", "image/png", PNG),
        ("images", "image/jpeg", b"\xff\xd8\xff not json"),
        ("images", "multipart/form-data; boundary=x", b"--x\r\n\r\n--x--"),
        ("texts", "text/plain; charset=utf-8", "Grüße".encode()),
        ("bytes", "application/octet-stream", b"\x00\x01"),
    ):
        check_body(template, "POST", predict_path(name), body, content_type.split(";")[0])


def test_a_tensor_model_keeps_its_request_model(synth_processed: Synth) -> None:
    template = synth_processed.merged_json
    check_body(template, "POST", predict_path("tensors"), b'{"inputs": {"features": [[1, 2, 3, 4]]}}', "")
    with pytest.raises(GatewayRefusal):
        check_body(template, "POST", predict_path("tensors"), b'{"rows": []}', "application/json")
    predict = {r.path for r in routes(template) if r.path.endswith("/predict")}
    assert predict == {predict_path(n) for n in ("tensors", "images", "texts", "bytes")}


@pytest.mark.parametrize("name", ["tensors", "images", "texts", "bytes"])
def test_the_refusal_message_names_the_processed_interface(synth_processed: Synth, name: str) -> None:
    template = synth_processed.model_json(name)  # each model's API refuses a body in its own words
    [response] = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::GatewayResponse"
        and r["Properties"]["ResponseType"] == "BAD_REQUEST_BODY"
    ]
    document = json.loads(response["ResponseTemplates"]["application/json"])
    assert document["error"]["code"] == "malformed_request"
    assert document["error"]["message"].startswith(
        "request body: expected a JSON object with either instances"
    )
    processed = "a model with processing takes a JSON object with instances" in document["error"]["message"]
    assert processed == (name != "tensors")


def _byte_matches(statement: dict[str, Any]) -> list[str]:
    found = []
    if "ByteMatchStatement" in statement:
        found.append(statement["ByteMatchStatement"]["SearchString"])
    for key in ("AndStatement", "OrStatement"):
        for inner in statement.get(key, {}).get("Statements", []):
            found += _byte_matches(inner)
    return found


def test_the_waf_counts_every_binary_types_base64_growth(synth_processed: Synth) -> None:
    [acl] = [
        r["Properties"]
        for r in synth_processed.merged_json["Resources"].values()
        if r["Type"] == "AWS::WAFv2::WebACL"
    ]
    [rule] = [r for r in acl["Rules"] if r["Name"] == "LambdaPayloadLimit"]
    assert _byte_matches(rule["Statement"]) == [
        "application/x-npy",
        "image/jpeg",
        "image/png",
        "image/webp",
        "multipart/form-data",
        "text/plain",
        "application/octet-stream",
        "audio/",
    ]
