"""Requests into validated tensors, outputs into responses.

Request forms (the ones TF Serving and KServe v1 users already send):

* ``{"instances": [...]}``: one item per instance.  For a single-input model an item is that
  input's row; otherwise an object keyed by input name.
* ``{"inputs": {"name": tensor, ...}}``: whole tensors, batch dimension included (a single-input
  model also takes ``{"inputs": tensor}``).
* ``[...]``: a bare list, for a single-input model: the same as ``{"instances": [...]}`` (what the
  SageMaker Python SDK's default JSON serializer sends for ``predictor.predict(X)``).
* ``application/x-npy``: one array, for a single-input model.

Every tensor is checked against the schema before onnxruntime sees it: rank, fixed sizes, sizes
shared through a symbolic dimension, dtype (no strings where numbers belong, no fractions where
integers belong, no value outside the dtype's range), and finite values.  Errors say where
(``instances[3][1]``) and what was expected, never what was sent.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from mdk_runtime.errors import InvalidInput, MalformedRequest, NotAcceptable, PayloadTooLarge
from mdk_runtime.schema import Signature, TensorSpec, dtype_name

Form = Literal["instances", "inputs", "npy"]
REQUEST_HELP = (
    "expected a JSON object with 'instances' (a list, one item per instance) "
    "or 'inputs' (tensors by input name), or for a model with one input a bare list of instances"
)


@dataclass(slots=True)
class Feeds:
    """The feeds of one model run: arrays for onnxruntime (by graph name, in graph dtypes), how many
    instances they hold, and the request form they came in ("batch" in this kit is batch transform)."""

    feeds: dict[str, np.ndarray]
    n: int
    form: Form


# ---------------------------------------------------------------------------------------------
# JSON / npy bodies
# ---------------------------------------------------------------------------------------------


def load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson's messages give the position and the problem, never the document itself.
        raise MalformedRequest(f"request body is not valid JSON: {exc}") from None


_NPY_HEADERS: dict[bytes, tuple[tuple[int, ...], bool, np.dtype[Any]] | None] = {}  # a client's shapes


def _npy_view(body: bytes) -> np.ndarray | None:
    """The array of a plain version 1 or 2 ``.npy`` body (numeric, no object dtype), read in place: the
    header through numpy.lib.format (parsed once per distinct header: its literal_eval is most of
    np.load's cost), the data as ``np.frombuffer`` over the body (read-only, no copy). None for anything
    else: np.load then reads it, or says why it cannot."""
    if len(body) < 12 or not body.startswith(b"\x93NUMPY") or body[6] not in (1, 2):
        return None
    size = 2 if body[6] == 1 else 4
    offset = 8 + size + int.from_bytes(body[8 : 8 + size], "little")
    header = body[:offset]
    if header not in _NPY_HEADERS:
        from numpy.lib import format as npy_format

        read = npy_format.read_array_header_1_0 if size == 2 else npy_format.read_array_header_2_0
        try:
            parsed: tuple[tuple[int, ...], bool, np.dtype[Any]] | None = read(io.BytesIO(header[8:]))
        except (ValueError, OSError, EOFError, SyntaxError):
            parsed = None
        if parsed is not None and (parsed[2].hasobject or parsed[2].kind not in "biuf"):
            parsed = None
        if len(_NPY_HEADERS) >= 256:
            _NPY_HEADERS.clear()
        _NPY_HEADERS[header] = parsed
    parsed = _NPY_HEADERS[header]
    if parsed is None:
        return None
    shape, fortran, dtype = parsed
    count = 1
    for dim in shape:
        count *= dim
    if len(body) - offset != count * dtype.itemsize:
        return None  # truncated, or bytes after the data: np.load's own message
    arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
    return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)


def load_npy(body: bytes) -> np.ndarray:
    fast = _npy_view(body)
    if fast is not None:
        return fast
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise MalformedRequest(f"request body is not a valid .npy array: {reason}") from None
    if not isinstance(arr, np.ndarray):  # an .npz archive
        raise MalformedRequest("request body is an .npz archive; send a single .npy array")
    return arr


# ---------------------------------------------------------------------------------------------
# Locating a bad element (error path only)
# ---------------------------------------------------------------------------------------------


# What a JSON value is, in words; bool before int (a bool is an int in Python).
_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (type(None), "null"),
    ((bool, np.bool_), "a boolean"),
    ((str, np.str_), "a string"),
    (dict, "an object"),
    (list, "a nested list"),
    ((int, float), "a number"),
)


def _describe(value: Any) -> str:
    for kind, words in _KINDS:
        if isinstance(value, kind):
            return words
    return type(value).__name__


def _locate(value: Any, bad: Any) -> tuple[str, Any] | None:
    """Index path (``[2][0]``) and value of the first leaf for which ``bad(leaf)`` holds.

    Iterative, because JSON may nest ~1000 deep and this runs on client data.
    """
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        elif bad(item):
            return path, item
    return None


def _index_path(index: Sequence[int]) -> str:
    return "".join(f"[{int(i)}]" for i in index)


# ---------------------------------------------------------------------------------------------
# Tensors
# ---------------------------------------------------------------------------------------------


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def _expected(spec: TensorSpec, rows: bool) -> str:
    what = dtype_name(spec.dtype)
    if rows:
        return f"each instance of shape {spec.describe_shape(per_instance=True)} ({what})"
    return f"shape {spec.describe_shape()} ({what})"


def _to_strings(field: str, value: Any, spec: TensorSpec, rows: bool) -> np.ndarray:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "U":
            raise InvalidInput(
                f"{field}: expected strings, got a {value.dtype} array",
                field=field,
            )
        return value.astype(object)
    try:
        arr = np.array(value, dtype=object)
    except ValueError:
        raise InvalidInput(
            f"{field}: nested lists are ragged; expected {_expected(spec, rows)}", field=field
        ) from None
    found = _locate(value, lambda leaf: not isinstance(leaf, str))
    if found is not None:
        where, leaf = found
        raise InvalidInput(f"{field}{where}: expected a string, got {_describe(leaf)}", field=field)
    return arr


def _check_numbers(field: str, arr: np.ndarray, source: Any, spec: TensorSpec) -> None:
    """Reject what numpy would silently coerce: strings, nulls, booleans, fractions for integers."""
    want = spec.dtype
    assert want is not None
    kind = arr.dtype.kind
    if kind in "iuf" and want.kind in "iuf":
        return
    if kind == "b" and want.kind == "b":
        return
    if kind in "US" or kind == "O":
        if source is None:  # an .npy array
            raise InvalidInput(f"{field}: expected {dtype_name(want)}, got a {arr.dtype} array", field=field)
        found = _locate(
            source,
            lambda leaf: (
                isinstance(leaf, bool)
                or not isinstance(leaf, int | float)
                or (isinstance(leaf, int) and not -(2**63) <= leaf < 2**64)
            ),
        )
        where, leaf = found if found is not None else ("", source)
        if isinstance(leaf, int) and not isinstance(leaf, bool):
            raise InvalidInput(f"{field}{where}: integer out of range for {dtype_name(want)}", field=field)
        expected = "booleans (true/false)" if want.kind == "b" else f"{dtype_name(want)} numbers"
        raise InvalidInput(f"{field}{where}: expected {expected}, got {_describe(leaf)}", field=field)
    if want.kind == "b":
        raise InvalidInput(f"{field}: expected booleans (true/false), got numbers", field=field)
    if kind == "b":
        raise InvalidInput(f"{field}: expected {dtype_name(want)} numbers, got booleans", field=field)
    raise InvalidInput(f"{field}: expected {dtype_name(want)}, got a {arr.dtype} array", field=field)


def _cast(field: str, arr: np.ndarray, spec: TensorSpec) -> np.ndarray:
    want = spec.dtype
    assert want is not None
    if want.kind in "iu":
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr) | (arr != np.trunc(arr))
            if bad.any():
                where = _index_path(np.argwhere(bad)[0])
                raise InvalidInput(
                    f"{field}{where}: expected an integer ({dtype_name(want)}), "
                    "got a fraction or non-finite number",
                    field=field,
                )
        if arr.size:
            info = np.iinfo(want)
            lo, hi = arr.min(), arr.max()
            if lo < info.min or hi > info.max:
                bad = (arr < info.min) | (arr > info.max)
                where = _index_path(np.argwhere(bad)[0])
                raise InvalidInput(
                    f"{field}{where}: value out of range for {dtype_name(want)} [{info.min}, {info.max}]",
                    field=field,
                )
        return arr.astype(want, copy=False)
    if want.kind == "f":
        with np.errstate(over="ignore", invalid="ignore"):
            out = arr.astype(want, copy=False)
        if not np.isfinite(out).all():  # one check on the hot path; which kind of bad on the error path
            where_bad = ~np.isfinite(out)
            where = _index_path(np.argwhere(where_bad)[0])
            if arr.dtype.kind == "f" and not np.isfinite(arr[where_bad]).all():
                raise InvalidInput(f"{field}{where}: NaN and infinite values are not accepted", field=field)
            limit = float(np.finfo(want).max)
            raise InvalidInput(
                f"{field}{where}: value out of range for {dtype_name(want)} (|x| <= {limit:.4g})",
                field=field,
            )
        return out
    return arr.astype(want, copy=False)


def _check_shape(
    field: str,
    arr: np.ndarray,
    spec: TensorSpec,
    *,
    rows: bool,
    batched: bool,
    symbols: dict[str, tuple[int, str]],
) -> None:
    """Rank and fixed sizes as the schema says; a named dimension the same size across inputs."""
    shape = spec.shape
    if shape is None:
        return
    if arr.ndim != len(shape):
        got = arr.shape[1:] if rows else arr.shape
        raise InvalidInput(
            f"{field}: expected {_expected(spec, rows)}, got shape {_shape_text(got)}", field=field
        )
    for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
        if axis == 0 and batched:
            continue
        if isinstance(want, int) and want != got:
            shown = arr.shape[1:] if rows else arr.shape
            raise InvalidInput(
                f"{field}: expected {_expected(spec, rows)}, got shape {_shape_text(shown)}", field=field
            )
        if isinstance(want, str):
            bound = symbols.setdefault(want, (got, field))
            if bound[0] != got:
                raise InvalidInput(
                    f"{field}: dimension {want!r} is {got} here but {bound[0]} in {bound[1]}", field=field
                )


def to_tensor(
    field: str,
    value: Any,
    spec: TensorSpec,
    *,
    rows: bool,
    batched: bool,
    symbols: dict[str, tuple[int, str]],
) -> np.ndarray:
    """Validate one input's data and return it in the graph's dtype.

    ``rows`` says the data is a list of instances (so errors speak of "each instance");
    ``symbols`` collects sizes bound to symbolic dimensions across the request's inputs.
    """
    assert spec.dtype is not None
    assert spec.graph_dtype is not None
    if spec.dtype.kind == "O":
        arr = _to_strings(field, value, spec, rows)
    else:
        if isinstance(value, np.ndarray):
            arr, source = value, None
        else:
            try:
                arr = np.asarray(value)
            except (ValueError, TypeError, OverflowError):
                raise InvalidInput(
                    f"{field}: nested lists are ragged or nested too deep; expected {_expected(spec, rows)}",
                    field=field,
                ) from None
            source = value
        _check_numbers(field, arr, source, spec)

    _check_shape(field, arr, spec, rows=rows, batched=batched, symbols=symbols)
    if 0 in arr.shape:
        raise InvalidInput(f"{field}: empty tensor (shape {_shape_text(arr.shape)})", field=field)
    if spec.dtype.kind != "O":
        arr = _cast(field, arr, spec)
    if spec.graph_dtype != spec.dtype:
        arr = arr.astype(spec.graph_dtype)
    return arr


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


def _count(sig: Signature, n: int, field: str) -> int:
    if n == 0:
        raise InvalidInput(f"{field}: no instances; send at least one", field=field)
    if n > sig.max_instances:
        raise PayloadTooLarge(
            f"{field}: {n} instances, the limit is {sig.max_instances} per request; "
            "score larger inputs with batch transform (a JSON Lines file in the batch inbox)",
            field=field,
        )
    return n


def _check_names(field: str, given: dict[str, Any], sig: Signature) -> None:
    names = {s.name for s in sig.inputs}
    missing = [s.name for s in sig.inputs if s.name not in given]
    if missing:
        raise InvalidInput(
            f"{field}: missing input {missing[0]!r} (inputs: {sig.input_names})",
            field=f"{field}.{missing[0]}",
        )
    if any(k not in names for k in given):
        # The unknown name is the client's data: not echoed, the expected names are.
        raise InvalidInput(f"{field}: unknown input name (inputs: {sig.input_names})", field=field)


def _from_instances(instances: Any, sig: Signature) -> Feeds:
    if not isinstance(instances, list):
        raise MalformedRequest("instances: expected a list, one item per instance", field="instances")
    n = _count(sig, len(instances), "instances")
    symbols: dict[str, tuple[int, str]] = {}
    if not sig.batched and n != 1:
        raise InvalidInput(
            f"instances: this model takes one instance per request (no batch dimension), got {n}",
            field="instances",
        )
    single = sig.inputs[0] if len(sig.inputs) == 1 else None
    if single is not None and not isinstance(instances[0], dict):
        data = instances if sig.batched else instances[0]
        arr = to_tensor("instances", data, single, rows=sig.batched, batched=sig.batched, symbols=symbols)
        return Feeds({single.graph_name: arr}, n, "instances")

    columns: dict[str, list[Any]] = {s.name: [] for s in sig.inputs}
    for i, item in enumerate(instances):
        if not isinstance(item, dict):
            raise InvalidInput(
                f"instances[{i}]: expected an object keyed by input name (inputs: {sig.input_names})",
                field=f"instances[{i}]",
            )
        if len(item) != len(columns) or any(k not in columns for k in item):
            _check_names(f"instances[{i}]", item, sig)
        for name, column in columns.items():
            column.append(item[name])
    feeds = {}
    for s in sig.inputs:
        data = columns[s.name] if sig.batched else columns[s.name][0]
        feeds[s.graph_name] = to_tensor(
            f"instances[*].{s.name}", data, s, rows=sig.batched, batched=sig.batched, symbols=symbols
        )
    return Feeds(feeds, n, "instances")


def _from_inputs(inputs: Any, sig: Signature) -> Feeds:
    if not isinstance(inputs, dict):
        if len(sig.inputs) != 1:
            raise MalformedRequest(
                f"inputs: expected an object keyed by input name (inputs: {sig.input_names})", field="inputs"
            )
        inputs = {sig.inputs[0].name: inputs}
    _check_names("inputs", inputs, sig)
    symbols: dict[str, tuple[int, str]] = {}
    feeds: dict[str, np.ndarray] = {}
    n: int | None = None
    for s in sig.inputs:
        field = f"inputs.{s.name}"
        arr = to_tensor(field, inputs[s.name], s, rows=False, batched=sig.batched, symbols=symbols)
        if sig.batched:
            if n is None:
                n = _count(sig, int(arr.shape[0]), field)
            elif arr.shape[0] != n:
                raise InvalidInput(
                    f"{field}: batch dimension is {arr.shape[0]}, but {sig.inputs[0].name} has {n}",
                    field=field,
                )
        feeds[s.graph_name] = arr
    return Feeds(feeds, n if n is not None else 1, "inputs")


def decode_json(doc: Any, sig: Signature) -> Feeds:
    if isinstance(doc, list):
        # A bare array is what the SageMaker Python SDK's default JSONSerializer sends for
        # predictor.predict(X): read it as "instances" (one item per instance) when that is unambiguous.
        if len(sig.inputs) != 1:
            raise MalformedRequest(
                "request body: a bare JSON array is read as 'instances' only for a model with one input; "
                f'this model has inputs {sig.input_names}: send {{"inputs": {{name: tensor, ...}}}} '
                'or {"instances": [{name: value, ...}, ...]}'
            )
        return _from_instances(doc, sig)
    if not isinstance(doc, dict):
        raise MalformedRequest(f"request body: {REQUEST_HELP}")
    if len(doc) == 1:
        if "instances" in doc:
            return _from_instances(doc["instances"], sig)
        if "inputs" in doc:
            return _from_inputs(doc["inputs"], sig)
    if "instances" in doc and "inputs" in doc:
        raise MalformedRequest("request body: send either 'instances' or 'inputs', not both")
    raise MalformedRequest(f"request body: {REQUEST_HELP}, and no other field")


def decode_npy(body: bytes, sig: Signature) -> Feeds:
    if len(sig.inputs) != 1:
        raise InvalidInput(
            f"application/x-npy carries one tensor, but this model has inputs {sig.input_names}; "
            "send JSON with 'inputs'",
        )
    spec = sig.inputs[0]
    arr = to_tensor("body", load_npy(body), spec, rows=False, batched=sig.batched, symbols={})
    n = _count(sig, int(arr.shape[0]), "body") if sig.batched else 1
    return Feeds({spec.graph_name: arr}, n, "npy")


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """What orjson cannot write natively (string and non-contiguous arrays) as plain lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError


def dump_json(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY, default=_plain)


_LINE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def json_lines(docs: list[Any]) -> list[bytes]:
    """Each document as one line of JSON, ending in a newline."""
    dumps = orjson.dumps
    return [dumps(doc, option=_LINE, default=_plain) for doc in docs]


def dump_json_lines(docs: list[Any]) -> bytes:
    return b"".join(json_lines(docs))


def _class_names(sig: Signature, width: int) -> list[str]:
    if sig.labels is not None and len(sig.labels) == width:
        return list(sig.labels)
    return [str(i) for i in range(width)]


def _label(raw: Any, sig: Signature) -> Any:
    if isinstance(raw, str):
        return raw
    value = int(raw)
    if sig.labels is not None and 0 <= value < len(sig.labels):
        return sig.labels[value]
    return value


def _picked_labels(sig: Signature, scores: np.ndarray, labels: Any, names: list[str]) -> list[Any]:
    """Each row's label: the graph's label output (named by the schema) or the best-scoring class."""
    if labels is None:  # label = the class with the highest score
        return [names[i] for i in np.argmax(scores, axis=1).tolist()]
    if labels.dtype.kind == "O":  # string labels from the graph
        picked: list[Any] = labels.tolist()
        return picked
    ids = labels.tolist()
    if sig.labels is not None and ids and _within(labels, ids, len(sig.labels)):
        lut = list(sig.labels)  # every class id has a name: one lookup per row, no checks
        return [lut[i] for i in ids]
    return [_label(i, sig) for i in ids]


def _within(labels: np.ndarray, ids: list[Any], count: int) -> bool:
    """Every class id in [0, count). A request's few rows are checked in Python (numpy's min and max
    cost ~3 µs each on a 1-row array: a tenth of a small model's whole overhead); a batch's in numpy."""
    if labels.size <= 256:
        return bool(min(ids) >= 0 and max(ids) < count)
    return bool(labels.min() >= 0 and labels.max() < count)


def _classifier_rows(sig: Signature, outputs: dict[str, Any], n: int) -> list[dict[str, Any]]:
    clf = sig.classifier
    assert clf is not None
    scores = outputs[clf.scores_output]
    labels = outputs[clf.label_output] if clf.label_output is not None else None
    rows: list[dict[str, Any]] = []
    if isinstance(scores, list):  # seq(map): one {class: score} dict per row
        for i in range(n):
            per_class = {str(k): float(v) for k, v in scores[i].items()}
            label: Any = (
                _label(labels[i], sig) if labels is not None else max(per_class, key=per_class.__getitem__)
            )
            rows.append({"label": label, clf.scores_key: per_class})
        return rows
    names = _class_names(sig, int(scores.shape[1]))
    picked = _picked_labels(sig, scores, labels, names)
    key = clf.scores_key
    return [
        {"label": label, key: dict(zip(names, row, strict=True))}
        for label, row in zip(picked, scores.tolist(), strict=True)
    ]


def classifier_lines(sig: Signature, outputs: dict[str, Any], n: int) -> list[bytes] | None:
    """The JSON Lines of classifier rows, byte for byte what :func:`dump_json_lines` writes for
    :func:`_classifier_rows`, but written from per-class templates: batch transform's hot loop.

    orjson writes all scores in one call (the same float text as row by row); each row's numbers are
    cut out of it (numbers hold no brackets or commas) and put into the row's template. ``None`` when
    the outputs are not a 2-D score tensor (the general path then applies).
    """
    clf = sig.classifier
    assert clf is not None
    scores = outputs[clf.scores_output]
    if not isinstance(scores, np.ndarray) or scores.ndim != 2 or n == 0 or scores.shape[1] == 0:
        return None
    labels = outputs[clf.label_output] if clf.label_output is not None else None
    names = _class_names(sig, int(scores.shape[1]))
    picked = _picked_labels(sig, scores, labels, names)
    body = b",".join(orjson.dumps(name).replace(b"%", b"%%") + b":%b" for name in names) + b"}}\n"
    key = orjson.dumps(clf.scores_key).replace(b"%", b"%%")
    templates: dict[Any, bytes] = {}  # one per label: the whole line but the numbers
    for label in set(picked):
        head = b'{"label":' + orjson.dumps(label).replace(b"%", b"%%") + b"," + key + b":{"
        templates[label] = head + body
    rows = orjson.dumps(scores.tolist())[2:-2].split(b"],[")
    if len(rows) != n:
        return None
    return [templates[label] % tuple(row.split(b",")) for label, row in zip(picked, rows, strict=True)]


def response_doc(sig: Signature, outputs: dict[str, Any], n: int, form: Form) -> dict[str, Any]:
    """``{"predictions": [...]}`` for instances, ``{"outputs": {...}}`` for whole tensors (JSON or .npy)."""
    if form != "instances":
        doc: dict[str, Any] = {"outputs": outputs}
        if sig.classifier is not None and sig.labels is not None:
            doc["labels"] = list(sig.labels)
        return doc
    if sig.classifier is not None:
        return {"predictions": _classifier_rows(sig, outputs, n)}
    if not sig.batched:
        only = next(iter(outputs.values())) if len(outputs) == 1 else outputs
        return {"predictions": [only]}
    # Outputs that carry one row per instance are split by instance; any other output (a scalar,
    # a pooled tensor) cannot belong to one instance and is returned whole under "outputs".
    per_row = {k: v for k, v in outputs.items() if _rows_of(v) == n}
    rest = {k: v for k, v in outputs.items() if k not in per_row}
    doc = {}
    if len(per_row) == 1 and not rest:
        doc["predictions"] = next(iter(per_row.values()))
    else:
        doc["predictions"] = [{k: v[i] for k, v in per_row.items()} for i in range(n)]
        if rest:
            doc["outputs"] = rest
    return doc


def _rows_of(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else None
    if isinstance(value, list):
        return len(value)
    return None


def dump_npy(sig: Signature, outputs: dict[str, Any]) -> bytes:
    tensors = {k: v for k, v in outputs.items() if isinstance(v, np.ndarray) and v.dtype.kind != "O"}
    if len(outputs) != 1 or len(tensors) != 1:
        raise NotAcceptable(
            "application/x-npy returns one numeric tensor, but this model's outputs are "
            f"{', '.join(outputs)}; accept application/json"
        )
    buf = io.BytesIO()
    np.save(buf, next(iter(tensors.values())), allow_pickle=False)
    return buf.getvalue()
