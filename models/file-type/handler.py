"""Magika file-type detection: a file's bytes in, its content type out.

What ``magika.Magika().identify_bytes`` (magika 1.0.3, ``magika/magika.py``) does, in the kit's hooks:

* the request is the file itself (``application/octet-stream``) or ``{"b64": "..."}`` items in JSON;
* features (``_extract_features_from_seekable``): of the first ``block_size`` bytes (or all, if fewer),
  leading whitespace stripped, the first ``beg_size`` as integers, padded at the end with
  ``padding_token``; of the last ``block_size``, trailing whitespace stripped, the last ``end_size``,
  padded at the start; the model takes ``beg + end`` (2,048 int32);
* answer (``_get_output_label_from_dl_label_and_score``, prediction mode ``high-confidence``): the
  model's best label, renamed by ``overwrite_map``; kept if its score reaches the label's threshold
  (``thresholds``, else ``medium_confidence_threshold``), else ``txt`` for a text type and ``unknown``
  for a binary one;
* without the model: an empty file is ``empty``; a file shorter than ``min_file_size_for_dl`` bytes,
  or with fewer meaningful bytes than that once stripped, is ``txt`` if it is valid UTF-8, else
  ``unknown`` (score 1.0).

The model's ``config.min.json`` and the package's ``content_types_kb.min.json`` (group, MIME type,
description per label) ship beside this file (``processing.files``). ``options.prediction_mode`` may
be ``high-confidence`` (Magika's default), ``medium-confidence`` or ``best-guess``.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mdk_runtime.processing import Context, InvalidInput

MODES = ("high-confidence", "medium-confidence", "best-guess")
UNDEFINED, EMPTY, TXT, UNKNOWN = "undefined", "empty", "txt", "unknown"


def load(context: Context) -> None:
    config = json.loads((context.files / "config.min.json").read_text(encoding="utf-8"))
    kb = json.loads((context.files / "content_types_kb.min.json").read_text(encoding="utf-8"))
    mode = str(context.options.get("prediction_mode", "high-confidence"))
    if mode not in MODES:
        raise ValueError(f"options.prediction_mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if config["mid_size"] or config["use_inputs_at_offsets"]:
        raise ValueError(
            "config.min.json: mid_size and use_inputs_at_offsets are not supported (as in magika)"
        )
    if not (config["beg_size"] < config["block_size"] and config["end_size"] < config["block_size"]):
        raise ValueError("config.min.json: beg_size and end_size must be below block_size")
    types = {}
    for label, info in kb.items():  # as Magika._load_content_types_kb fills in the gaps
        types[label] = {
            "mime_type": info["mime_type"]
            or ("text/plain" if info["is_text"] else "application/octet-stream"),
            "group": info["group"] or "unknown",
            "description": info["description"] or label,
            "is_text": bool(info["is_text"]),
        }
    labels = list(config["target_labels_space"])
    missing = [label for label in labels if config["overwrite_map"].get(label, label) not in types]
    if missing:
        raise ValueError(f"content_types_kb.min.json lacks {missing[:5]}")
    context.state = {"config": config, "types": types, "labels": labels, "mode": mode}


def _features(content: bytes, config: dict[str, Any]) -> list[int]:
    block, beg_size, end_size, pad = (
        config["block_size"],
        config["beg_size"],
        config["end_size"],
        config["padding_token"],
    )
    n = min(block, len(content))
    beg = list(content[:n].lstrip()[:beg_size])
    beg += [pad] * (beg_size - len(beg))
    end = list(content[len(content) - n :].rstrip())
    end = end[len(end) - end_size :] if len(end) > end_size else end
    end = [pad] * (end_size - len(end)) + end
    return beg + end


def preprocess(instance: Any, context: Context) -> dict[str, np.ndarray]:
    if not isinstance(instance, bytes | bytearray):
        raise InvalidInput(
            'expected a file\'s bytes: a raw application/octet-stream body, or {"b64": "<base64>"} in JSON'
        )
    features = _features(bytes(instance), context.state["config"])
    return {context.inputs[0]: np.asarray([features], dtype=np.int32)}


def _answer(context: Context, label: str, score: float, model_label: str, reason: str) -> dict[str, Any]:
    info = context.state["types"][label]
    return {
        "label": label,
        "score": score,
        "group": info["group"],
        "mime_type": info["mime_type"],
        "description": info["description"],
        "is_text": info["is_text"],
        "model_label": model_label,
        "overwrite_reason": reason,
    }


def _few_bytes(content: bytes) -> str:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return UNKNOWN
    return TXT


def postprocess(outputs: Any, instance: Any, context: Context) -> dict[str, Any]:
    config, state = context.state["config"], context.state
    content = bytes(instance)
    if not content:
        return _answer(context, EMPTY, 1.0, UNDEFINED, "none")
    if len(content) < config["min_file_size_for_dl"]:
        return _answer(context, _few_bytes(content), 1.0, UNDEFINED, "none")
    if _features(content, config)[config["min_file_size_for_dl"] - 1] == config["padding_token"]:
        # Too few meaningful bytes once whitespace is stripped: the model is not asked.
        return _answer(context, _few_bytes(content[: config["block_size"]]), 1.0, UNDEFINED, "none")
    scores = np.asarray(outputs[context.outputs[0]])[0].tolist()
    best = max(range(len(scores)), key=scores.__getitem__)
    score = float(scores[best])
    model_label = state["labels"][best]
    label = config["overwrite_map"].get(model_label, model_label)
    reason = "overwrite_map" if label != model_label else "none"
    mode = state["mode"]
    threshold = config["thresholds"].get(model_label, config["medium_confidence_threshold"])
    confident = (
        mode == "best-guess"
        or (mode == "high-confidence" and score >= threshold)
        or (mode == "medium-confidence" and score >= config["medium_confidence_threshold"])
    )
    if not confident:
        label = TXT if state["types"][label]["is_text"] else UNKNOWN
        reason = "none" if label == model_label else "low_confidence"
    return _answer(context, label, score, model_label, reason)
