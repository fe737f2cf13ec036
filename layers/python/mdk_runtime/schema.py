"""The request schema of a model: read from the ONNX graph, narrowed by the spec's overrides."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from mdk_runtime.errors import ModelLoadError
from mdk_runtime.spec import Dim, ModelSpec

# ONNX tensor element types that JSON and .npy can carry, by onnxruntime's type string.
ONNX_DTYPES: dict[str, np.dtype[Any]] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(string)": np.dtype(np.object_),
}
DTYPE_NAMES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "string": np.dtype(np.object_),
}


def dtype_name(dtype: np.dtype[Any] | None) -> str:
    if dtype is None:
        return "unsupported"
    return "string" if dtype.kind == "O" else str(dtype)


class NodeArg(Protocol):
    """What onnxruntime's ``NodeArg`` offers (``session.get_inputs()`` items)."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def shape(self) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output as clients see it.

    ``name`` is what requests and responses use (the config's alias, if any); ``graph_name`` is the
    ONNX name.  ``dtype`` is what clients send (an override may widen it, e.g. uint8 pixels for a
    float32 input) and ``graph_dtype`` what onnxruntime gets; it is None for non-tensor outputs.
    """

    name: str
    graph_name: str
    onnx_type: str
    dtype: np.dtype[Any] | None
    graph_dtype: np.dtype[Any] | None
    shape: tuple[Dim, ...] | None

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def describe_shape(self, *, per_instance: bool = False) -> str:
        """``[N, 4]``: fixed sizes as numbers, symbolic or unknown sizes as names.

        ``per_instance`` drops the batch dimension: the shape of one item of ``instances``.
        """
        if self.shape is None:
            return "[...]"
        dims = [_dim_label(d, i) for i, d in enumerate(self.shape)]
        return "[" + ", ".join(dims[1:] if per_instance else dims) + "]"

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "dtype": dtype_name(self.dtype),
            "shape": None if self.shape is None else list(self.shape),
        }
        if self.graph_name != self.name:
            doc["graph_name"] = self.graph_name
        if self.onnx_type not in ONNX_DTYPES:
            doc["onnx_type"] = self.onnx_type
        return doc


def _dim_label(dim: Dim, index: int) -> str:
    if isinstance(dim, int):
        return str(dim)
    if isinstance(dim, str) and dim:
        return dim
    return "N" if index == 0 else f"d{index}"


@dataclass(frozen=True, slots=True)
class Classifier:
    """How a classifier's outputs become labels and per-class scores."""

    label_output: str | None  # graph output holding the label, or None: argmax of the scores
    scores_output: str  # graph output holding per-class scores: [N, C] tensor or seq(map)
    scores_key: Literal["probabilities", "scores"]
    labels: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class Signature:
    """The validated request/response schema of a model."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batched: bool
    batch_size: int | None  # a fixed batch dimension (e.g. 1) the runtime splits requests into
    classifier: Classifier | None
    labels: tuple[str, ...] | None
    max_instances: int

    @property
    def input_names(self) -> str:
        return ", ".join(s.name for s in self.inputs)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "inputs": [s.to_json() for s in self.inputs],
            "outputs": [s.to_json() for s in self.outputs],
            "batched": self.batched,
            "fixed_batch_size": self.batch_size,
            "max_instances": self.max_instances,
        }
        if self.classifier is not None:
            doc["classifier"] = {
                "label_output": self.classifier.label_output,
                self.classifier.scores_key + "_output": self.classifier.scores_output,
            }
        if self.labels is not None:
            doc["labels"] = list(self.labels)
        return doc


# dim_param values that name no dimension: each such dimension is unknown on its own, not one symbol
# shared by every dimension that carries it.  What onnxruntime reports (``NodeArg.shape``):
# * ``'?'``: paddle2onnx writes ``dim_param: "?"`` for every dynamic size (PaddleOCR's classifier
#   input is ``[-1, 3, '?', '?']``: height and width are free, not equal); other tools print unknown
#   sizes as ``?`` too.  Reported as the string ``'?'``.
# * an empty ``dim_param`` and a dimension with neither value nor param (what many exporters leave
#   for an unknown size) are both reported as ``None``; a ``dim_value`` of 0 or -1 as that number.
#   Whitespace-only names are treated like the empty one.
# Names onnx shape inference and tf2onnx write for unknown sizes, ``unk__0``, ``unk__1`` ..., stay
# names: each is fresh where it is made, so two dimensions share one only where the tool found them
# equal (an input's size carried to an output), which is what a symbol means.
ANONYMOUS_DIMS = frozenset({"", "?"})


def _graph_shape(raw: Sequence[Any] | None) -> tuple[Dim, ...] | None:
    if raw is None:
        return None
    dims: list[Dim] = []
    for d in raw:
        if (isinstance(d, int) and d > 0) or (isinstance(d, str) and d.strip() not in ANONYMOUS_DIMS):
            dims.append(d)
        else:  # 0, negative, None, '?' or '': unknown, and independent of every other dimension
            dims.append(None)
    return tuple(dims)


def _merge_shape(name: str, graph: tuple[Dim, ...] | None, override: tuple[Dim, ...]) -> tuple[Dim, ...]:
    # An override written as the graph prints ('?') means "free" there too, not a shared name.
    override = tuple(None if isinstance(o, str) and o.strip() in ANONYMOUS_DIMS else o for o in override)
    if graph is None:
        return override
    if len(graph) != len(override):
        raise ModelLoadError(
            f"schema.inputs.{name}.shape: the graph's input has rank {len(graph)}, "
            f"the override {len(override)}"
        )
    for i, (g, o) in enumerate(zip(graph, override, strict=True)):
        if isinstance(g, int) and isinstance(o, int) and g != o:
            raise ModelLoadError(
                f"schema.inputs.{name}.shape[{i}]: the graph fixes this dimension at {g}, "
                f"the override says {o}"
            )
    # A fixed size in the graph wins over a name in the override.
    return tuple(g if isinstance(g, int) else o for g, o in zip(graph, override, strict=True))


def _input_spec(arg: NodeArg, spec: ModelSpec) -> TensorSpec:
    graph_dtype = ONNX_DTYPES.get(arg.type)
    if graph_dtype is None:
        raise ModelLoadError(
            f"input {arg.name!r} has type {arg.type}, which JSON and .npy requests cannot carry"
        )
    shape = _graph_shape(arg.shape)
    override = spec.inputs.get(arg.name)
    dtype = graph_dtype
    name = arg.name
    if override is not None:
        if override.shape is not None:
            shape = _merge_shape(arg.name, shape, override.shape)
        if override.dtype is not None:
            wanted = DTYPE_NAMES.get(override.dtype)
            if wanted is None:
                raise ModelLoadError(
                    f"schema.inputs.{arg.name}.dtype: expected one of {', '.join(DTYPE_NAMES)}, "
                    f"got {override.dtype!r}"
                )
            if (wanted.kind == "O") != (graph_dtype.kind == "O") or not np.can_cast(
                wanted, graph_dtype, "safe"
            ):
                raise ModelLoadError(
                    f"schema.inputs.{arg.name}.dtype: {override.dtype} cannot be cast safely to the "
                    f"graph's {dtype_name(graph_dtype)}"
                )
            dtype = wanted
        if override.alias:
            name = override.alias
    return TensorSpec(name, arg.name, arg.type, dtype, graph_dtype, shape)


def _output_spec(arg: NodeArg) -> TensorSpec:
    dtype = ONNX_DTYPES.get(arg.type)
    return TensorSpec(arg.name, arg.name, arg.type, dtype, dtype, _graph_shape(arg.shape))


def _is_scores(spec: TensorSpec) -> bool:
    if spec.onnx_type.startswith("seq(map("):
        return True
    return spec.dtype is not None and spec.dtype.kind == "f" and spec.rank == 2


def _is_label(spec: TensorSpec) -> bool:
    return spec.dtype is not None and spec.dtype.kind in "iuO" and spec.rank == 1


def _find_classifier(outputs: Sequence[TensorSpec], spec: ModelSpec) -> Classifier | None:
    by_name = {o.graph_name: o for o in outputs}
    override = spec.classifier
    if override is not None:
        for key, value in (
            ("label_output", override.label_output),
            ("probabilities_output", override.probabilities_output),
        ):
            if value is not None and value not in by_name:
                raise ModelLoadError(
                    f"schema.classifier.{key}: no output {value!r} (outputs: {', '.join(by_name)})"
                )
        if override.probabilities_output is None:
            raise ModelLoadError("schema.classifier.probabilities_output: required to name the scores")
        scores = by_name[override.probabilities_output]
        if not _is_scores(scores):
            raise ModelLoadError(
                f"schema.classifier.probabilities_output: {scores.name!r} is not a [N, classes] float "
                "tensor or a sequence of maps"
            )
        return Classifier(override.label_output, scores.graph_name, "probabilities", spec.labels)
    labels = [o for o in outputs if _is_label(o)]
    scores_outputs = [o for o in outputs if _is_scores(o)]
    # The shape scikit-learn converters (skl2onnx) and most exported classifiers produce.
    if len(outputs) == 2 and len(labels) == 1 and len(scores_outputs) == 1:
        return Classifier(labels[0].graph_name, scores_outputs[0].graph_name, "probabilities", spec.labels)
    # One [N, C] score tensor plus configured labels: label = argmax.
    if spec.labels is not None and len(outputs) == 1 and scores_outputs:
        return Classifier(None, scores_outputs[0].graph_name, "scores", spec.labels)
    return None


def build_signature(inputs: Sequence[NodeArg], outputs: Sequence[NodeArg], spec: ModelSpec) -> Signature:
    """Combine the graph's declared inputs and outputs with the spec; every mismatch is a load error."""
    graph_names = {a.name for a in inputs}
    unknown = sorted(set(spec.inputs) - graph_names)
    if unknown:
        raise ModelLoadError(
            f"schema.inputs.{unknown[0]}: the model has no such input "
            f"(inputs: {', '.join(sorted(graph_names))})"
        )
    in_specs = tuple(_input_spec(a, spec) for a in inputs)
    public = [s.name for s in in_specs]
    if len(set(public)) != len(public):
        raise ModelLoadError(f"schema.inputs: aliases collide ({', '.join(public)})")
    out_specs = tuple(_output_spec(a) for a in outputs)

    batched = spec.batched
    if batched is None:
        batched = all(s.rank is None or s.rank >= 1 for s in in_specs)
    batch_size: int | None = None
    if batched:
        if any(s.rank == 0 for s in in_specs):
            raise ModelLoadError("schema.batched: true, but an input is a scalar (rank 0)")
        fixed = {s.shape[0] for s in in_specs if s.shape and isinstance(s.shape[0], int)}
        if len(fixed) > 1:
            raise ModelLoadError(
                "inputs disagree on a fixed batch dimension ("
                + ", ".join(f"{s.name} {s.describe_shape()}" for s in in_specs)
                + "); if the first dimension is not a batch, set schema.batched: false"
            )
        batch_size = fixed.pop() if fixed else None

    classifier = _find_classifier(out_specs, spec)
    if classifier is not None and spec.labels is not None:
        scores = next(o for o in out_specs if o.graph_name == classifier.scores_output)
        width = scores.shape[1] if scores.shape is not None and len(scores.shape) == 2 else None
        if isinstance(width, int) and width != len(spec.labels):
            raise ModelLoadError(
                f"schema.labels: {len(spec.labels)} labels, but output {scores.name!r} has {width} classes"
            )
    return Signature(
        inputs=in_specs,
        outputs=out_specs,
        batched=batched,
        batch_size=batch_size,
        classifier=classifier,
        labels=spec.labels,
        max_instances=spec.max_instances,
    )


# Sizes tried, in order, for the dimensions a graph leaves unknown when the model has no example:
# 1 first (the smallest request; most graphs, convolutions with padding included, run on it), then the
# graph's own fixed sizes (a free width beside a fixed 64 is often 64 too), then sizes that suit
# pooling and strided convolutions (a 3x3 kernel without padding needs more than 1 pixel).
SYNTHETIC_SIZES = (1, 32, 64, 224)
# No candidate whose inputs hold more elements than this (64 MiB of float32) is tried.
SYNTHETIC_MAX_ELEMENTS = 1 << 24


def _free(spec: TensorSpec, axis: int, batched: bool) -> bool:
    """Whether this axis is sized by the caller: unknown or symbolic, and not the batch axis."""
    assert spec.shape is not None
    return not isinstance(spec.shape[axis], int) and not (batched and axis == 0)


def synthetic_sizes(signature: Signature) -> tuple[int, ...]:
    """The sizes to try for the inputs' free dimensions, in order (only ``(1,)`` when none is free)."""
    free = any(
        s.shape is None or any(_free(s, axis, signature.batched) for axis in range(len(s.shape)))
        for s in signature.inputs
    )
    if not free:
        return (1,)
    fixed = sorted(
        {
            d
            for s in signature.inputs
            for d in (s.shape or ())[1 if signature.batched else 0 :]
            if isinstance(d, int)
        }
    )
    sizes: list[int] = []
    for size in (1, *fixed, *SYNTHETIC_SIZES[1:]):
        if size not in sizes:
            sizes.append(size)
    return tuple(sizes)


def synthetic_shapes(signature: Signature, size: int = 1, batch: int = 1) -> dict[str, tuple[int, ...]]:
    """Each input's full shape (by graph name) with every free dimension ``size`` and the batch ``batch``.

    Every free dimension takes the same size, so a symbolic name shared by several inputs holds.  A fixed
    batch dimension keeps its size; an input of unknown rank is taken as a vector of ``batch``.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for s in signature.inputs:
        if s.shape is None:
            shapes[s.graph_name] = (batch,)
            continue
        dims = []
        for axis, d in enumerate(s.shape):
            if isinstance(d, int):
                dims.append(d)
            elif signature.batched and axis == 0:
                dims.append(batch)
            else:
                dims.append(size)
        shapes[s.graph_name] = tuple(dims)
    return shapes


def synthetic_elements(signature: Signature, size: int = 1) -> int:
    """How many values the synthetic inputs of this size hold, all inputs together."""
    return sum(int(np.prod(shape)) for shape in synthetic_shapes(signature, size).values())


def example_feeds(signature: Signature, batch: int = 1, size: int = 1) -> dict[str, np.ndarray]:
    """Zero tensors (empty strings, false) of each input's graph dtype, shaped by :func:`synthetic_shapes`.

    The warm-up runs these when the model has no example; :func:`example_request` is the same data as a
    request body.
    """
    feeds: dict[str, np.ndarray] = {}
    for s in signature.inputs:
        assert s.graph_dtype is not None
        dims = synthetic_shapes(signature, size, batch)[s.graph_name]
        if s.graph_dtype.kind == "O":
            feeds[s.graph_name] = np.full(dims, "", dtype=object)
        else:
            feeds[s.graph_name] = np.zeros(dims, dtype=s.graph_dtype)
    return feeds


def _zero(spec: TensorSpec) -> Any:
    dtype = spec.dtype
    assert dtype is not None
    return "" if dtype.kind == "O" else (False if dtype.kind == "b" else 0)


def _nested(shape: Sequence[int], leaf: Any) -> Any:
    value = leaf
    for dim in reversed(shape):
        value = [value] * dim  # one list object repeated: cheap to build, written out in full by JSON
    return value


def example_request(signature: Signature, size: int = 1) -> dict[str, Any]:
    """One instance of the synthetic inputs as a JSON request body, in the ``instances`` form the codec
    reads: for one input a list of rows, else one object keyed by input name (aliases, client dtypes).

    Decoded by the codec it gives exactly :func:`example_feeds` with a batch of one.
    """
    shapes = synthetic_shapes(signature, size, 1)
    item: dict[str, Any] = {}
    for s in signature.inputs:
        shape = shapes[s.graph_name]
        # In the instances form each item is one row: the batch dimension is the list of instances.
        row = shape[1:] if signature.batched else shape
        item[s.name] = _nested(row, _zero(s))
    if len(item) == 1:
        return {"instances": [next(iter(item.values()))]}
    return {"instances": [item]}
