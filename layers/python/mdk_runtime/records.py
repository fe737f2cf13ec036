"""Record formats: JSON Lines and CSV, one instance per line, one answer per line.

Batch transform splits a file by line and reassembles the answers by line, so an answer must exist
for every record, in order: a record that cannot be scored yields an error record on its line
instead of failing the whole request. Valid records are scored together, grouped by shape (a
symbolic dimension may differ between records), with the same validation as every other request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from mdk_runtime.codec import (
    Feeds,
    classifier_lines,
    decode_json,
    dump_json_lines,
    json_lines,
    response_doc,
)
from mdk_runtime.errors import InvalidInput, MalformedRequest, MdkError, UnsupportedMediaType
from mdk_runtime.media import CSV, JSONL, JSONL_ALIASES
from mdk_runtime.schema import Signature

__all__ = ["CSV", "JSONL", "JSONL_ALIASES", "Records", "decode_csv", "decode_jsonl", "predictions"]


@dataclass
class Records:
    """The records of one request: groups of valid records (line numbers and their feeds), and errors."""

    count: int
    groups: list[tuple[list[int], Feeds]] = field(default_factory=list)
    errors: dict[int, MdkError] = field(default_factory=dict)

    @property
    def scored(self) -> int:
        return sum(len(lines) for lines, _ in self.groups)


def split_lines(body: bytes) -> list[bytes]:
    """Records of a body: one per line; a final newline does not make an empty last record."""
    lines = body.split(b"\n")
    if lines and lines[-1].strip() == b"":
        lines.pop()
    if b"\r" not in body:
        return lines
    return [line.rstrip(b"\r") for line in lines]


def _group(instances: dict[int, Any], sig: Signature, records: Records) -> None:
    """Validate instances together (fast path); fall back to one by one to find the bad ones."""
    if not instances:
        return
    lines = list(instances)
    try:
        records.groups.append((lines, decode_json({"instances": list(instances.values())}, sig)))
        return
    except MdkError:
        pass
    by_shape: dict[tuple[Any, ...], list[tuple[int, Feeds]]] = {}
    for line, instance in instances.items():
        try:
            part = decode_json({"instances": [instance]}, sig)
        except MdkError as exc:
            records.errors[line] = exc
            continue
        key = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(part.feeds.items()))
        by_shape.setdefault(key, []).append((line, part))
    for members in by_shape.values():
        feeds = {name: np.concatenate([b.feeds[name] for _, b in members]) for name in members[0][1].feeds}
        records.groups.append(([line for line, _ in members], Feeds(feeds, len(members), "instances")))


def decode_jsonl(body: bytes, sig: Signature, *, chunk: int = 4096) -> Records:
    """One JSON value per line: an instance (a row, or an object keyed by input name)."""
    if not sig.batched:
        raise UnsupportedMediaType("JSON Lines carries many instances; this model takes one per request")
    lines = split_lines(body)
    records = Records(count=len(lines))
    for start in range(0, len(lines), chunk):
        end = min(start + chunk, len(lines))
        # Fast path: the whole chunk parses as one array of exactly one value per line (no blank,
        # broken or multi-value line); else line by line, to put each error on its line.
        try:
            values = orjson.loads(b"[" + b",".join(lines[start:end]) + b"]")
        except orjson.JSONDecodeError:
            values = None
        if values is not None and len(values) == end - start:
            _group(dict(zip(range(start, end), values, strict=True)), sig, records)
            continue
        instances: dict[int, Any] = {}
        for i in range(start, end):
            line = lines[i]
            if not line.strip():
                records.errors[i] = MalformedRequest(f"line {i + 1}: empty record")
                continue
            try:
                instances[i] = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                records.errors[i] = MalformedRequest(f"line {i + 1}: not valid JSON: {exc}")
        _group(instances, sig, records)
    return records


def decode_csv(body: bytes, sig: Signature) -> Records:
    """Comma-separated numbers, one instance per line, no header: for one input of rows of numbers."""
    spec = sig.inputs[0] if len(sig.inputs) == 1 else None
    if (
        spec is None
        or not sig.batched
        or spec.rank not in (1, 2)
        or spec.dtype is None
        or spec.dtype.kind not in "iuf"
    ):
        raise UnsupportedMediaType(
            "text/csv carries rows of numbers for a model with one input of shape [N] or [N, features]; "
            "send JSON or JSON Lines"
        )
    try:
        lines = [line.decode("utf-8") for line in split_lines(body)]
    except UnicodeDecodeError:
        raise MalformedRequest("request body is not UTF-8 text") from None
    records = Records(count=len(lines))
    instances: dict[int, Any] = {}
    for i, line in enumerate(lines):
        fields = line.split(",")
        try:
            values = [_number(f) for f in fields]
        except ValueError as exc:
            records.errors[i] = InvalidInput(f"line {i + 1}: {exc}")
            continue
        instances[i] = values if spec.rank == 2 else (values[0] if len(values) == 1 else values)
    _group(instances, sig, records)
    return records


def _number(text: str) -> float | int:
    value = text.strip()
    if not value:
        raise ValueError("an empty field; expected a number")
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        raise ValueError("a field is not a number") from None
    if not math.isfinite(number):
        raise ValueError("NaN and infinite values are not accepted")
    return number


def predictions(sig: Signature, records: Records, outputs: list[dict[str, Any]]) -> list[Any]:
    """One answer per record, in order: the prediction, or the error in the functions' shape."""
    answers: list[Any] = [None] * records.count
    for (lines, part), out in zip(records.groups, outputs, strict=True):
        rows = response_doc(sig, out, part.n, "instances")["predictions"]
        for line, row in zip(lines, rows, strict=True):
            answers[line] = row
    for line, error in records.errors.items():
        answers[line] = error.to_body()
    return answers


def dump_jsonl(answers: list[Any]) -> bytes:
    return dump_json_lines(answers)


def jsonl_answers(sig: Signature, records: Records, outputs: list[dict[str, Any]]) -> bytes:
    """``dump_jsonl(predictions(...))``, written without building each row's objects where it can:
    a classifier's rows come from templates (:func:`mdk_runtime.codec.classifier_lines`)."""
    lines: list[bytes] = [b""] * records.count
    for (numbers, part), out in zip(records.groups, outputs, strict=True):
        encoded = classifier_lines(sig, out, part.n) if sig.classifier is not None else None
        if encoded is None:
            encoded = json_lines(response_doc(sig, out, part.n, "instances")["predictions"])
        if len(numbers) == records.count:  # one group of every line, in order: the common case
            lines = encoded
            continue
        for line, text in zip(numbers, encoded, strict=True):
            lines[line] = text
    for line, error in records.errors.items():
        lines[line] = dump_json_lines([error.to_body()])
    return b"".join(lines)


def dump_csv(answers: list[Any]) -> bytes:
    """Classifiers: ``label,p0,p1,...``; other models: the row's values; errors ``error,<code>,<message>``."""
    out = []
    for answer in answers:
        if isinstance(answer, dict) and "error" in answer:
            error = answer["error"]
            message = str(error["message"]).replace(",", ";").replace("\n", " ")
            out.append(f"error,{error['code']},{message}")
        elif isinstance(answer, dict) and "label" in answer:
            scores: dict[str, Any] = next((v for k, v in answer.items() if k != "label"), {})
            out.append(",".join([str(answer["label"]), *(repr(float(v)) for v in scores.values())]))
        else:
            parts = answer.values() if isinstance(answer, dict) else [answer]
            flat = [v for part in parts for v in np.ravel(np.asarray(part)).tolist()]
            out.append(",".join(str(v) for v in flat))
    return ("\n".join(out) + ("\n" if out else "")).encode()
