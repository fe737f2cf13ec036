"""The real pretrained examples (models/pretrained.yaml) as every test of them loads them, and the
in-process reference answer the serving paths are compared with."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mdk import pretrained
from mdk.bundle import write_bundle
from mdk.config import KitConfig, load_config
from mdk_runtime.service import InferenceService, Settings

REPO = Path(__file__).resolve().parent.parent
MODELS = REPO / "models"
CONFIG = MODELS / "pretrained.yaml"


def pretrained_config() -> KitConfig:
    """The config, with the graphs copied from their wheels first (a fresh clone before `make models`)."""
    for model in pretrained.PRETRAINED:
        pretrained.build(model)
    return load_config(CONFIG)


def reference_services(config: KitConfig, tmp: Path) -> dict[str, InferenceService]:
    """Each model loaded from its bundle as every serving path loads it."""
    out = {}
    for model in config.models:
        bundle = write_bundle(model, tmp / model.name)
        service = InferenceService.load(Settings(model_dir=bundle, threads=1))
        assert service.model is not None, service.load_error
        out[model.name] = service
    return out


def expected(service: InferenceService, body: bytes, content_type: str) -> dict[str, Any]:
    reply = service.predict(body, content_type, "application/json")
    assert reply.status == 200, reply.body
    (one,) = json.loads(reply.body)["predictions"]
    assert isinstance(one, dict)
    return one


def same_answer(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Labels, texts and types exactly; scores to float32 rounding (a batch may group lines differently)."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        if key == "score":
            assert got[key] == pytest.approx(value, rel=1e-4), key
        elif key == "classes":
            assert [c["label"] for c in got[key]] == [c["label"] for c in value]
            assert [c["score"] for c in got[key]] == pytest.approx([c["score"] for c in value], rel=1e-4)
        else:
            assert got[key] == value, key
