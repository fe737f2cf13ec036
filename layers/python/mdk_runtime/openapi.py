"""JSON Schema of a model's request and response bodies, from its signature (for OpenAPI documents)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mdk_runtime.media import JSON
from mdk_runtime.schema import Signature, TensorSpec, dtype_name
from mdk_runtime.spec import Dim

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }
    },
}


if TYPE_CHECKING:
    from mdk_runtime.processing import Processor


def _leaf(spec: TensorSpec) -> dict[str, Any]:
    dtype = spec.dtype
    if dtype is None:
        return {}
    if dtype.kind == "O":
        return {"type": "string"}
    if dtype.kind == "b":
        return {"type": "boolean"}
    if dtype.kind in "iu":
        return {"type": "integer", "format": dtype_name(dtype)}
    return {"type": "number", "format": dtype_name(dtype)}


def _array(dims: tuple[Dim, ...], leaf: dict[str, Any]) -> dict[str, Any]:
    schema = leaf
    for dim in reversed(dims):
        schema = {"type": "array", "items": schema, "minItems": 1}
        if isinstance(dim, int):
            schema["minItems"] = schema["maxItems"] = dim
    return schema


def tensor_schema(spec: TensorSpec, *, per_instance: bool, batched: bool) -> dict[str, Any]:
    if spec.shape is None:
        return {"description": f"{spec.name}: a tensor of {dtype_name(spec.dtype)} (rank unknown)"}
    dims = spec.shape[1:] if per_instance and batched else spec.shape
    if batched and not per_instance and dims and isinstance(dims[0], int):
        # A fixed batch dimension is split by the runtime: any number of rows is accepted.
        dims = (None, *dims[1:])
    schema = _array(tuple(dims), _leaf(spec))
    schema["description"] = f"{spec.name}: {dtype_name(spec.dtype)} {spec.describe_shape()}"
    return schema


def request_schema(sig: Signature) -> dict[str, Any]:
    """``instances`` (one item per instance), ``inputs`` (whole tensors by name), or for a model with one
    input a bare list of instances."""
    max_items = sig.max_instances if sig.batched else 1
    if len(sig.inputs) == 1:
        item = tensor_schema(sig.inputs[0], per_instance=True, batched=sig.batched)
    else:
        item = {
            "type": "object",
            "required": [s.name for s in sig.inputs],
            "additionalProperties": False,
            "properties": {
                s.name: tensor_schema(s, per_instance=True, batched=sig.batched) for s in sig.inputs
            },
        }
    inputs = {
        "type": "object",
        "required": [s.name for s in sig.inputs],
        "additionalProperties": False,
        "properties": {s.name: tensor_schema(s, per_instance=False, batched=sig.batched) for s in sig.inputs},
    }
    return {
        "oneOf": [
            {
                "type": "object",
                "required": ["instances"],
                "additionalProperties": False,
                "properties": {
                    "instances": {"type": "array", "items": item, "minItems": 1, "maxItems": max_items}
                },
            },
            {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {"inputs": inputs},
            },
            # A bare list of instances (the SageMaker SDK's default JSON), for a model with one input.
            *(
                [{"type": "array", "items": item, "minItems": 1, "maxItems": max_items}]
                if len(sig.inputs) == 1
                else []
            ),
        ]
    }


def response_schema(sig: Signature) -> dict[str, Any]:
    if sig.classifier is not None:
        prediction: dict[str, Any] = {
            "type": "object",
            "required": ["label", sig.classifier.scores_key],
            "properties": {
                "label": {"type": ["string", "integer"]},
                sig.classifier.scores_key: {"type": "object", "additionalProperties": {"type": "number"}},
            },
        }
    else:
        prediction = {}
    return {
        "type": "object",
        "properties": {
            "predictions": {"type": "array", "items": prediction},
            "outputs": {"type": "object"},
            "labels": {"type": "array", "items": {"type": "string"}},
        },
    }


def processed_request_content(processor: Processor) -> dict[str, Any]:
    """The request bodies a model with processing takes: JSON instances and its raw media types."""
    if processor.image is not None:
        item: dict[str, Any] = {
            "oneOf": [
                {"type": "string", "format": "byte", "description": "a base64 image (JPEG, PNG or WebP)"},
                {
                    "type": "object",
                    "properties": {"b64": {"type": "string", "format": "byte"}},
                    "required": ["b64"],
                    "additionalProperties": False,
                },
            ]
        }
    elif processor.text is not None:
        item = {"type": "string", "minLength": 1, "description": "a text"}
    else:
        item = {"description": 'one instance, as the model\'s handler reads it (bytes as {"b64": "..."})'}
    instances = {"type": "array", "items": item, "minItems": 1, "maxItems": processor.sig.max_instances}
    content: dict[str, Any] = {
        JSON: {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"instances": instances},
                        "required": ["instances"],
                        "additionalProperties": False,
                    },
                    instances,
                ]
            }
        }
    }
    for kind in processor.raw_types:
        if kind == "multipart/form-data":
            content[kind] = {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "description": "one file part per instance",
                }
            }
        elif kind == "text/plain":
            content[kind] = {"schema": {"type": "string"}}
        else:
            content[kind] = {"schema": {"type": "string", "format": "binary"}}
    return content


def processed_response_schema() -> dict[str, Any]:
    """A model with processing answers one JSON value per instance, as its postprocessing writes it."""
    return {
        "type": "object",
        "properties": {
            "predictions": {
                "type": "array",
                "description": "one answer per instance, in order: what the model's postprocessing returns",
            }
        },
        "required": ["predictions"],
    }
