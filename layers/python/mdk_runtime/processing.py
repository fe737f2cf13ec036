"""Pre- and post-processing that ships with a model: images, text or bytes in, readable answers out.

A model's ``processing`` (``models.yaml``, copied into ``mdk-model.json`` and the bundle's
``processing/`` directory) sits between the transport and the graph, in every serving path (the
Lambda function, the SageMaker container in real time and in batch transform, ``mdk serve``, the
local cloud, ``mdk batch run``), because they all go through :class:`mdk_runtime.service.InferenceService`:

* **instances** come from the request: a raw body (``image/png``, ``text/plain``, the types a handler
  names) is one instance; a multipart upload is one instance per file; JSON is ``{"instances": [...]}``
  or a bare list, where ``{"b64": "..."}`` stands for bytes (TensorFlow Serving's convention) and,
  for an image model, a plain string is a base64 image.
* **preprocess** turns one instance into the feeds of one run (a batch of one where the graph has a
  batch dimension): declared (:class:`ImageInput` with Pillow, :class:`TextInput` with Hugging Face
  ``tokenizers``) or a handler's ``preprocess(instance, context)``. Instances whose feeds have the same
  shapes are stacked and run together.
* **postprocess** turns one instance's outputs into its answer: declared (:class:`OutputStage`: top-k
  classes with labels, softmax, threshold, pooled/normalised embeddings) or ``postprocess(outputs,
  instance, context)``.

A handler is a Python module with optional hooks (the README's "Processing reference")::

    def load(context):                       # once, before traffic; may set context.state
    def preprocess(instance, context):       # -> {graph input name: array}, for this instance alone
    def postprocess(outputs, instance, context):  # -> a JSON-able answer for this instance

A hook raising :class:`mdk_runtime.errors.InvalidInput` (re-exported here) is the client's 422; any
other exception is ``500 processing_failed``, logged with its traceback, never shown to the client.
"""

from __future__ import annotations

import base64
import binascii
import importlib.util
import io
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from mdk_runtime.errors import (
    InvalidInput,
    MalformedRequest,
    MdkError,
    ModelLoadError,
    PayloadTooLarge,
    ProcessingFailed,
    UnsupportedMediaType,
)
from mdk_runtime.media import JSON
from mdk_runtime.schema import Signature, TensorSpec

__all__ = [
    "PROCESSING_DIR",
    "Context",
    "InvalidInput",
    "Processor",
    "build_processor",
]

log = logging.getLogger(__name__)

PROCESSING_DIR = "processing"  # in the bundle: tokenizer.json, the handler module and its files
HANDLER_MODULE = "mdk_model_handler"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp")
MULTIPART = "multipart/form-data"
TEXT = "text/plain"
# What Pillow may open: the formats the config promises, and nothing it would guess from content.
_PIL_FORMATS = ("JPEG", "PNG", "WEBP")


@dataclass
class Context:
    """What a handler's hooks get: the model's facts, its files, the config's options, and a state."""

    name: str
    version: str
    model_dir: Path
    files: Path  # the bundle's processing/ directory: the handler and the files shipped beside it
    metadata: Mapping[str, str]  # the ONNX graph's metadata_props (e.g. a character dictionary)
    labels: tuple[str, ...] | None
    inputs: tuple[str, ...]  # graph input names
    outputs: tuple[str, ...]  # graph output names
    options: Mapping[str, Any] = field(default_factory=dict)
    state: Any = None


@dataclass(slots=True)
class Group:
    """Instances whose feeds share shapes: one model run."""

    indices: list[int]
    feeds: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(self.indices)


# ------------------------------------------------------------------------------------------------
# Requests into instances
# ------------------------------------------------------------------------------------------------


def _b64(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where}: expected base64 (RFC 4648, standard alphabet)", field=where) from None


def _json_instance(item: Any, where: str, *, strings_are_bytes: bool) -> Any:
    """An item of ``instances``: ``{"b64": ...}`` is bytes; for an image model a string is too."""
    if isinstance(item, dict) and len(item) == 1 and "b64" in item:
        if not isinstance(item["b64"], str):
            raise InvalidInput(f"{where}.b64: expected a base64 string", field=f"{where}.b64")
        return _b64(item["b64"], f"{where}.b64")
    if strings_are_bytes and isinstance(item, str):
        return _b64(item, where)
    return item


def multipart_files(body: bytes, content_type: str, limit: int) -> list[bytes]:
    """The file parts of a ``multipart/form-data`` body, in order (RFC 7578), with the standard library."""
    if "boundary=" not in content_type.lower():
        raise MalformedRequest("multipart/form-data without a boundary parameter in Content-Type")
    # email (~30 ms of imports) only for multipart bodies: imported on the first one, cached by sys.modules
    from email.parser import BytesParser
    from email.policy import HTTP

    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise MalformedRequest("request body is not a valid multipart/form-data document")
    files: list[bytes] = []
    for part in message.iter_parts():
        disposition = part.get("Content-Disposition", "")
        uploaded = "filename=" in disposition or part.get_content_type().startswith(
            ("image/", "application/")
        )
        if not uploaded:
            continue  # a plain form field, not an upload
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes) or not payload:
            continue
        files.append(payload)
        if len(files) > limit:
            raise PayloadTooLarge(f"more than {limit} files in one request; send fewer per request")
    if not files:
        raise InvalidInput("multipart/form-data: no file part found; upload one file per instance")
    return files


# ------------------------------------------------------------------------------------------------
# Declared input stages
# ------------------------------------------------------------------------------------------------


def _graph_input(sig: Signature, name: str | None, where: str) -> TensorSpec:
    if name is None:
        if len(sig.inputs) != 1:
            raise ModelLoadError(
                f"{where}.input: the model has inputs {sig.input_names}; name the one it feeds"
            )
        return sig.inputs[0]
    for spec in sig.inputs:
        if name in (spec.graph_name, spec.name):
            return spec
    raise ModelLoadError(f"{where}.input: no graph input {name!r} (inputs: {sig.input_names})")


class ImageInput:
    """Decode (Pillow), orient, convert, resize, normalise and lay out one image as the graph wants it."""

    def __init__(self, doc: Mapping[str, Any], sig: Signature) -> None:
        from PIL import Image  # noqa: F401 - fail at load (ModelLoadError below), not at the first request

        self.spec = _graph_input(sig, doc.get("input"), "processing.image")
        self.batched = sig.batched
        self.channels = str(doc.get("channels", "RGB"))
        self.layout = str(doc.get("layout", "NCHW"))
        self.scale = float(doc.get("scale", 1 / 255))
        width = 1 if self.channels == "L" else 3
        self.mean = np.asarray(doc.get("mean") or [0.0], dtype=np.float32).reshape(-1)[:width]
        self.std = np.asarray(doc.get("std") or [1.0], dtype=np.float32).reshape(-1)[:width]
        self.fill = float(doc.get("fill", 0.0))
        self.max_pixels = int(doc.get("max_pixels", 40_000_000))
        self.resize = doc.get("resize")
        dtype = doc.get("dtype")
        graph = self.spec.graph_dtype
        self.dtype = np.dtype(dtype) if dtype else (graph if graph is not None else np.dtype(np.float32))
        shape = self.spec.shape
        rank = 4 if self.batched else 3
        if shape is not None and len(shape) != rank:
            raise ModelLoadError(
                f"processing.image: input {self.spec.name!r} has rank {len(shape)}, an image input needs "
                f"{rank} ({', '.join(self.layout if self.batched else self.layout[1:])})"
            )
        dims = list(shape[1:] if self.batched else shape) if shape is not None else [None, None, None]
        c_axis, h_axis, w_axis = (0, 1, 2) if self.layout == "NCHW" else (2, 0, 1)
        graph_c, graph_h, graph_w = dims[c_axis], dims[h_axis], dims[w_axis]
        if isinstance(graph_c, int) and graph_c != width:
            raise ModelLoadError(
                f"processing.image.channels: {self.channels} gives {width} channel(s), but input "
                f"{self.spec.name!r} has {graph_c} on its channel axis (layout {self.layout})"
            )
        if self.resize is not None:
            for key, graph_dim in (("height", graph_h), ("width", graph_w)):
                if isinstance(graph_dim, int) and int(self.resize[key]) != graph_dim:
                    raise ModelLoadError(
                        f"processing.image.resize.{key}: {self.resize[key]}, but input {self.spec.name!r} "
                        f"is {graph_dim} {'high' if key == 'height' else 'wide'}"
                    )
            self.size: tuple[int, int] | None = (int(self.resize["width"]), int(self.resize["height"]))
        elif isinstance(graph_h, int) and isinstance(graph_w, int):
            self.size = (graph_w, graph_h)
        else:
            self.size = None  # the image is fed at its own size

    def __call__(self, data: Any, where: str) -> dict[str, np.ndarray]:
        from PIL import Image, ImageOps, UnidentifiedImageError

        if not isinstance(data, bytes | bytearray):
            raise InvalidInput(
                f"{where}: expected an image (a raw image body, a multipart file, or base64 in JSON: "
                '"<base64>" or {"b64": "<base64>"})',
                field=where,
            )
        try:
            with Image.open(io.BytesIO(data), formats=_PIL_FORMATS) as opened:
                w, h = opened.size
                if w * h > self.max_pixels:
                    raise PayloadTooLarge(
                        f"{where}: the image is {w} x {h} pixels, over the model's limit of "
                        f"{self.max_pixels:,} (processing.image.max_pixels); send a smaller image",
                        field=where,
                    )
                opened.load()
                image = ImageOps.exif_transpose(opened)
        except MdkError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
            raise InvalidInput(
                f"{where}: not a readable image; send JPEG, PNG or WebP", field=where
            ) from None
        mode = "L" if self.channels == "L" else "RGB"
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            background = Image.new("RGBA", image.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, image.convert("RGBA"))
        image = image.convert(mode)
        pixels, box = self._resized(image)
        arr = pixels.astype(np.float32) if self.dtype.kind == "f" else pixels
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if self.channels == "BGR":  # mean and std are given in the model's channel order
            arr = arr[:, :, ::-1]
        if self.dtype.kind == "f":
            arr = (arr * np.float32(self.scale) - self.mean) / self.std
        if box is not None:  # padded: the canvas holds the fill value, the image goes in its box
            width, height = self.size or (arr.shape[1], arr.shape[0])
            canvas = np.full((height, width, arr.shape[2]), self.fill, dtype=arr.dtype)
            x, y = box
            canvas[y : y + arr.shape[0], x : x + arr.shape[1]] = arr
            arr = canvas
        if self.layout == "NCHW":
            arr = arr.transpose(2, 0, 1)
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if self.batched:
            arr = arr[None]
        return {self.spec.graph_name: arr}

    def _resized(self, image: Any) -> tuple[np.ndarray, tuple[int, int] | None]:
        """The pixels after resizing, and where they go on the padded canvas (None: no padding)."""
        from PIL import Image

        if self.size is None:
            return np.asarray(image), None
        width, height = self.size
        settings = self.resize or {"mode": "stretch"}
        mode = settings.get("mode", "stretch")
        resample = {
            "nearest": Image.Resampling.NEAREST,
            "bilinear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC,
            "lanczos": Image.Resampling.LANCZOS,
            "box": Image.Resampling.BOX,
        }[settings.get("interpolation", "bilinear")]
        antialias = bool(settings.get("antialias", True))

        def scaled(source: Any, size: tuple[int, int]) -> Any:
            if antialias:
                return source.resize(size, resample)
            # No low-pass filter when shrinking: each output pixel's centre is sampled from the source,
            # as OpenCV's cv2.resize does (bilinear: the same pixels to within one grey level).
            sw, sh = source.size
            matrix = (sw / size[0], 0, 0, 0, sh / size[1], 0)
            return source.transform(size, Image.Transform.AFFINE, matrix, resample)

        w, h = image.size
        if self.resize is None:
            if (w, h) != (width, height):
                raise InvalidInput(
                    f"image is {w} x {h} pixels; this model takes {width} x {height} "
                    "(no processing.image.resize is configured)"
                )
            return np.asarray(image), None
        if mode == "stretch":
            return np.asarray(scaled(image, (width, height))), None
        if mode == "letterbox":
            ratio = min(width / w, height / h)
            new_w, new_h = max(1, round(w * ratio)), max(1, round(h * ratio))
            resized = scaled(image, (new_w, new_h))
            return np.asarray(resized), ((width - new_w) // 2, (height - new_h) // 2)
        if mode == "fit_height":
            new_w = min(width, max(1, math.ceil(height * w / h)))
            resized = scaled(image, (new_w, height))
            return np.asarray(resized), (0, 0)
        # centre_crop: shorter side to shorter_side (aspect kept), then the centre width x height
        shorter = int(settings.get("shorter_side") or max(width, height))
        ratio = shorter / min(w, h)
        new_w, new_h = max(width, round(w * ratio)), max(height, round(h * ratio))
        resized = scaled(image, (new_w, new_h))
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return np.asarray(resized.crop((left, top, left + width, top + height))), None


class TextInput:
    """Strings into token ids, attention mask and token types, with the bundle's ``tokenizer.json``."""

    def __init__(self, doc: Mapping[str, Any], sig: Signature, model_dir: Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - the image installs it for text models
            raise ModelLoadError("processing.text needs the tokenizers package in the image") from exc
        path = model_dir / str(doc["tokenizer"])
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise ModelLoadError(f"processing.text.tokenizer: cannot load {path.name}: {exc}") from exc
        self.max_length = int(doc.get("max_length", 512))
        self.padding = str(doc.get("padding", "longest"))
        self.truncation = bool(doc.get("truncation", True))
        self.add_special_tokens = bool(doc.get("add_special_tokens", True))
        names = doc.get("inputs") or {"input_ids": "input_ids", "attention_mask": "attention_mask"}
        self.roles: dict[str, TensorSpec] = {}
        for role in ("input_ids", "attention_mask", "token_type_ids"):
            name = names.get(role)
            if name is not None:
                self.roles[role] = _graph_input(sig, name, f"processing.text.inputs.{role}")
        fed = {s.graph_name for s in self.roles.values()}
        unfed = [s.name for s in sig.inputs if s.graph_name not in fed]
        if unfed:
            raise ModelLoadError(
                f"processing.text.inputs: graph input {unfed[0]!r} is fed by none of input_ids, "
                "attention_mask, token_type_ids; name it under one of them"
            )
        self.pad_id = self._pad_id()

    def _pad_id(self) -> int:
        padding = self.tokenizer.padding
        if padding is not None:
            return int(padding.get("pad_id", 0))
        for token in ("[PAD]", "<pad>", "<PAD>"):
            found = self.tokenizer.token_to_id(token)
            if found is not None:
                return int(found)
        return 0

    def encode(self, texts: Sequence[Any], where: Callable[[int], str]) -> dict[str, np.ndarray]:
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInput(f"{where(i)}: expected a string of text", field=where(i))
            if not text:
                raise InvalidInput(f"{where(i)}: empty text", field=where(i))
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=self.add_special_tokens)
        lengths = [len(e.ids) for e in encodings]
        if not self.truncation:
            for i, n in enumerate(lengths):
                if n > self.max_length:
                    raise InvalidInput(
                        f"{where(i)}: {n} tokens, over the model's max_length of {self.max_length} "
                        "(processing.text.truncation is off); send a shorter text",
                        field=where(i),
                    )
        width = self.max_length if self.padding == "max_length" else min(self.max_length, max(lengths))
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = min(len(enc.ids), width)
            ids[row, :n] = enc.ids[:n]
            mask[row, :n] = enc.attention_mask[:n]
            types[row, :n] = enc.type_ids[:n]
        by_role = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {
            spec.graph_name: by_role[role].astype(spec.graph_dtype or np.int64, copy=False)
            for role, spec in self.roles.items()
        }


# ------------------------------------------------------------------------------------------------
# Declared output stage
# ------------------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    out: np.ndarray = e / np.sum(e, axis=-1, keepdims=True)
    return out


class OutputStage:
    """One instance's outputs into ``{"label", "score", "classes"}``, ``{"embedding"}`` or the tensor."""

    def __init__(self, doc: Mapping[str, Any], sig: Signature, labels: tuple[str, ...] | None) -> None:
        names = [o.graph_name for o in sig.outputs]
        wanted = doc.get("output")
        if wanted is not None and wanted not in names:
            raise ModelLoadError(f"processing.output.output: no graph output {wanted!r} (outputs: {names})")
        self.output = wanted or names[0]
        self.kind = str(doc.get("kind", "classes"))
        self.softmax = bool(doc.get("softmax", False))
        self.top_k = int(doc.get("top_k", 5))
        self.threshold = doc.get("threshold")
        self.pooling = str(doc.get("pooling", "none"))
        self.normalize = bool(doc.get("normalize", False))
        self.labels = labels

    def __call__(self, outputs: Mapping[str, Any], feeds: Mapping[str, np.ndarray] | None) -> Any:
        value = outputs[self.output]
        arr = np.asarray(value)
        if self.kind == "tensor":
            return {self.output: arr[0] if arr.ndim and arr.shape[0] == 1 else arr}
        if self.kind == "embedding":
            return {"embedding": self._embedding(arr, feeds).tolist()}
        scores = arr.astype(np.float64, copy=False).reshape(-1)
        if self.softmax:
            scores = _softmax(scores)
        order = np.argsort(-scores, kind="stable")[: self.top_k]
        names = self.labels if self.labels is not None and len(self.labels) == scores.size else None
        classes = [
            {"label": names[i] if names is not None else str(int(i)), "score": float(scores[i])}
            for i in order.tolist()
            if self.threshold is None or scores[i] >= float(self.threshold)
        ]
        best = int(order[0])
        return {
            "label": names[best] if names is not None else str(best),
            "score": float(scores[best]),
            "classes": classes,
        }

    def _embedding(self, arr: np.ndarray, feeds: Mapping[str, np.ndarray] | None) -> np.ndarray:
        vec = arr.astype(np.float32, copy=False)
        if vec.ndim and vec.shape[0] == 1:
            vec = vec[0]
        if self.pooling == "cls":
            vec = vec[0]
        elif self.pooling == "mean":
            mask = None
            if feeds is not None:
                for name, fed in feeds.items():
                    if "mask" in name and fed.shape[-1] == vec.shape[0]:
                        mask = fed.reshape(-1)[: vec.shape[0]].astype(np.float32)
            if mask is None:
                mask = np.ones(vec.shape[0], dtype=np.float32)
            vec = (vec * mask[:, None]).sum(axis=0) / max(float(mask.sum()), 1e-9)
        vec = vec.reshape(-1)
        if self.normalize:
            norm = float(np.linalg.norm(vec))
            if norm > 0:
                vec = vec / norm
        return vec


# ------------------------------------------------------------------------------------------------
# Handlers
# ------------------------------------------------------------------------------------------------


def load_handler(path: Path) -> ModuleType:
    """Import a handler module from its file (its directory first on the path, for its own modules)."""
    if not path.is_file():
        raise ModelLoadError(f"processing.handler: {path.name} is not in the bundle")
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(HANDLER_MODULE, path)
    if spec is None or spec.loader is None:
        raise ModelLoadError(f"processing.handler: cannot import {path.name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[HANDLER_MODULE] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        log.error("the model's handler failed to import", exc_info=exc)
        raise ModelLoadError(
            f"processing.handler: importing {path.name} failed: {type(exc).__name__}: {str(exc)[:300]}"
        ) from exc
    for hook in ("load", "preprocess", "postprocess"):
        found = getattr(module, hook, None)
        if found is not None and not callable(found):
            raise ModelLoadError(f"processing.handler: {path.name}: {hook} is not a function")
    if not any(callable(getattr(module, h, None)) for h in ("preprocess", "postprocess")):
        raise ModelLoadError(f"processing.handler: {path.name} defines neither preprocess nor postprocess")
    return module


def _hook_failed(hook: str, exc: BaseException, where: str | None = None) -> MdkError:
    if isinstance(exc, MdkError):
        if where is not None and exc.field is None and exc.status < 500:
            exc.field = where  # which instance, in the field and the message (as declared processing does)
            if not exc.message.startswith(where):
                exc.message = f"{where}: {exc.message}"
        return exc
    log.error("the model's %s hook raised %s", hook, type(exc).__name__, exc_info=exc)
    return ProcessingFailed(f"the model's {hook} hook failed ({type(exc).__name__}); the incident is logged")


# ------------------------------------------------------------------------------------------------
# The processor
# ------------------------------------------------------------------------------------------------


def _shape_key(feeds: Mapping[str, np.ndarray]) -> tuple[Any, ...]:
    return tuple((k, v.shape, v.dtype.str) for k, v in sorted(feeds.items()))


class Processor:
    """A model's processing: request into instances, instances into groups of feeds, outputs into answers."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        sig: Signature,
        context: Context,
    ) -> None:
        self.doc = doc
        self.sig = sig
        self.context = context
        self.image = ImageInput(doc["image"], sig) if doc.get("image") else None
        self.text = TextInput(doc["text"], sig, context.model_dir) if doc.get("text") else None
        self.output = OutputStage(doc["output"], sig, context.labels) if doc.get("output") else None
        self.handler: ModuleType | None = None
        if doc.get("handler"):
            self.handler = load_handler(context.model_dir / str(doc["handler"]))
            load = getattr(self.handler, "load", None)
            if load is not None:
                try:
                    load(context)
                except Exception as exc:
                    log.error("the model's load hook failed", exc_info=exc)
                    raise ModelLoadError(
                        f"processing.handler: load() failed: {type(exc).__name__}: {str(exc)[:300]}"
                    ) from exc
        self._pre = getattr(self.handler, "preprocess", None) if self.handler is not None else None
        self._post = getattr(self.handler, "postprocess", None) if self.handler is not None else None
        self.raw_types: tuple[str, ...] = tuple(doc.get("content_types") or ())
        if self._pre is not None and self.raw_types and self.image is None:
            self.raw_types = (*self.raw_types, MULTIPART)  # a file upload is one instance per file, too
        if self.image is not None:
            self.raw_types = (*IMAGE_TYPES, MULTIPART, *self.raw_types)
        elif self.text is not None:
            self.raw_types = (TEXT, *self.raw_types)

    # -- what the request holds ------------------------------------------------------------------

    @property
    def takes_input(self) -> bool:
        """Whether requests are instances for processing (else tensors, as for any model)."""
        return self.image is not None or self.text is not None or self._pre is not None

    def accepts(self, kind: str) -> bool:
        return kind in self.raw_types or any(
            t.endswith("/*") and kind.startswith(t[:-1]) for t in self.raw_types
        )

    def instances(self, body: bytes, kind: str, content_type: str | None, doc: Any = None) -> list[Any]:
        """The request's instances: a raw body is one; a multipart body one per file; JSON a list."""
        limit = self.sig.max_instances
        if kind == MULTIPART:
            return multipart_files(body, content_type or "", limit)
        if kind == TEXT:
            try:
                return [body.decode("utf-8")]
            except UnicodeDecodeError:
                raise InvalidInput("request body: text/plain must be UTF-8") from None
        if kind != JSON:
            if not body and self._pre is None:  # a handler decides what an empty file means (a type: empty)
                raise InvalidInput("request body is empty; send the input as the body")
            return [bytes(body)]
        if isinstance(doc, dict) and list(doc) == ["instances"]:
            items, where = doc["instances"], "instances"
        elif isinstance(doc, list):
            items, where = doc, "instances"
        else:
            raise MalformedRequest(
                'request body: expected {"instances": [...]} or a bare JSON list, one item per instance'
                + (
                    ' (an image: "<base64>" or {"b64": "<base64>"})'
                    if self.image is not None
                    else " (a text: a string)"
                    if self.text is not None
                    else ""
                ),
            )
        if not isinstance(items, list):
            raise MalformedRequest("instances: expected a list, one item per instance", field="instances")
        if not items:
            raise InvalidInput("instances: no instances; send at least one", field="instances")
        if len(items) > limit:
            raise PayloadTooLarge(
                f"instances: {len(items)} instances, the limit is {limit} per request; score larger "
                "inputs with batch transform (a JSON Lines file in the batch inbox)",
                field="instances",
            )
        bytes_ok = self.image is not None
        return [
            _json_instance(item, f"{where}[{i}]", strings_are_bytes=bytes_ok) for i, item in enumerate(items)
        ]

    def record(self, value: Any, line: int) -> Any:
        """One JSON Lines record as an instance (``{"b64": ...}`` is bytes; for images, a string too)."""
        return _json_instance(value, f"line {line + 1}", strings_are_bytes=self.image is not None)

    # -- instances into feeds --------------------------------------------------------------------

    def preprocess(self, instances: Sequence[Any], where: Callable[[int], str]) -> list[Group]:
        """Feeds for every instance, grouped by shape (raises MdkError for the first bad instance)."""
        groups, errors = self.preprocess_each(instances, where)
        if errors:
            raise errors[min(errors)]
        return groups

    def preprocess_each(
        self, instances: Sequence[Any], where: Callable[[int], str]
    ) -> tuple[list[Group], dict[int, MdkError]]:
        """Like :meth:`preprocess`, but a bad instance is an error of its own and the rest still run."""
        errors: dict[int, MdkError] = {}
        if self.text is not None and self._pre is None:
            try:
                return [Group(list(range(len(instances))), self.text.encode(instances, where))], errors
            except MdkError:
                if len(instances) == 1:
                    raise
            per: list[tuple[int, dict[str, np.ndarray]]] = []
            for i, text in enumerate(instances):  # find the bad ones; each good one is its own run
                try:
                    per.append((i, self.text.encode([text], _fixed(where(i)))))
                except MdkError as exc:
                    errors[i] = exc
            return self._grouped(per), errors
        per = []
        for i, instance in enumerate(instances):
            try:
                per.append((i, self._feeds(instance, where(i))))
            except MdkError as exc:
                errors[i] = exc
        return self._grouped(per), errors

    def _feeds(self, instance: Any, where: str) -> dict[str, np.ndarray]:
        if self._pre is not None:
            try:
                raw = self._pre(instance, self.context)
            except Exception as exc:
                raise _hook_failed("preprocess", exc, where) from exc
            return self._checked(raw)
        if self.image is not None:
            return self.image(instance, where)
        assert self.text is not None
        return self.text.encode([instance], _fixed(where))

    def _checked(self, raw: Any) -> dict[str, np.ndarray]:
        """A handler's feeds: every graph input, arrays of its rank, cast to its dtype (else its bug: 500)."""
        if not isinstance(raw, Mapping):
            raise ProcessingFailed(
                f"the model's preprocess hook returned {type(raw).__name__}; expected a dict of arrays "
                "by graph input name"
            )
        feeds: dict[str, np.ndarray] = {}
        for spec in self.sig.inputs:
            value = raw.get(spec.graph_name, raw.get(spec.name))
            if value is None:
                raise ProcessingFailed(
                    f"the model's preprocess hook did not return input {spec.graph_name!r}"
                )
            arr = np.asarray(value)
            if spec.shape is not None and arr.ndim != len(spec.shape):
                raise ProcessingFailed(
                    f"the model's preprocess hook returned input {spec.graph_name!r} with rank {arr.ndim}; "
                    f"the graph takes rank {len(spec.shape)}"
                )
            if spec.graph_dtype is not None and arr.dtype != spec.graph_dtype:
                arr = arr.astype(spec.graph_dtype)
            feeds[spec.graph_name] = arr
        return feeds

    def _grouped(self, per: list[tuple[int, dict[str, np.ndarray]]]) -> list[Group]:
        if not self.sig.batched:
            return [Group([i], feeds) for i, feeds in per]
        by_shape: dict[tuple[Any, ...], list[tuple[int, dict[str, np.ndarray]]]] = {}
        for i, feeds in per:
            key = tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(feeds.items()))
            by_shape.setdefault(key, []).append((i, feeds))
        groups = []
        for members in by_shape.values():
            if len(members) == 1:
                groups.append(Group([members[0][0]], members[0][1]))
                continue
            names = members[0][1].keys()
            feeds = {name: np.concatenate([f[name] for _, f in members]) for name in names}
            groups.append(Group([i for i, _ in members], feeds))
        return groups

    # -- outputs into answers --------------------------------------------------------------------

    def answers(
        self,
        groups: Sequence[Group],
        outputs: Sequence[Mapping[str, Any]],
        instances: Sequence[Any],
        count: int,
    ) -> list[Any]:
        """One answer per instance, in the request's order (``None`` where an instance had no run)."""
        answers: list[Any] = [None] * count
        for group, out in zip(groups, outputs, strict=True):
            for row, index in enumerate(group.indices):
                one = {k: _row(v, row, group.n, self.sig.batched) for k, v in out.items()}
                feeds = {k: _row(v, row, group.n, self.sig.batched) for k, v in group.feeds.items()}
                answers[index] = self.answer(one, instances[index], feeds)
        return answers

    def answer(self, outputs: Mapping[str, Any], instance: Any, feeds: Mapping[str, np.ndarray]) -> Any:
        if self._post is not None:
            try:
                return self._post(outputs, instance, self.context)
            except Exception as exc:
                raise _hook_failed("postprocess", exc) from exc
        if self.output is not None:
            return self.output(outputs, feeds)
        return {
            k: (v[0] if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == 1 else v)
            for k, v in outputs.items()
        }

    def synthetic_request(self) -> tuple[bytes, str] | None:
        """A request the model's declared input takes (a mid-grey image of its size, a short text), for
        a warm-up without an example; None for a handler, whose inputs only it knows."""
        if self._pre is not None:
            return None
        if self.image is not None:
            from PIL import Image

            width, height = self.image.size or (64, 64)
            buf = io.BytesIO()
            Image.new("L" if self.image.channels == "L" else "RGB", (width, height), 128).save(
                buf, format="PNG"
            )
            return buf.getvalue(), "image/png"
        if self.text is not None:
            return b"warm up", TEXT
        return None

    def describe(self) -> dict[str, Any]:
        """What ``/metadata`` says a client sends and gets back."""
        doc: dict[str, Any] = {
            "request": {
                "raw_types": list(self.raw_types),
                "json": (
                    'an image per instance: {"instances": ["<base64>" or {"b64": "<base64>"}, ...]}'
                    if self.image is not None
                    else 'a text per instance: {"instances": ["...", ...]}'
                    if self.text is not None
                    else 'the model\'s handler reads each item of instances (bytes as {"b64": ...})'
                    if self._pre is not None
                    else "tensors, as for any model"
                ),
            }
        }
        if self.image is not None:
            doc["image"] = {k: v for k, v in self.doc["image"].items() if k != "input"}
        if self.text is not None:
            doc["text"] = {k: v for k, v in self.doc["text"].items() if k != "tokenizer"}
        if self.output is not None:
            doc["output"] = dict(self.doc["output"])
        if self.handler is not None:
            doc["handler"] = Path(str(self.doc["handler"])).name
        return doc


def _fixed(where: str) -> Callable[[int], str]:
    return lambda _i: where


def _row(value: Any, row: int, n: int, batched: bool) -> Any:
    """Instance ``row``'s slice of an output that has one row per instance (else the output whole)."""
    if batched and isinstance(value, np.ndarray) and value.ndim and value.shape[0] == n:
        return value[row : row + 1]
    if batched and isinstance(value, list) and len(value) == n:
        return value[row : row + 1]
    return value


def build_processor(
    doc: Mapping[str, Any] | None,
    sig: Signature,
    *,
    name: str,
    version: str,
    model_dir: Path,
    metadata: Mapping[str, str],
    labels: tuple[str, ...] | None,
) -> Processor | None:
    """The model's processor (None without ``processing``); raises ModelLoadError naming the field."""
    if not doc:
        return None
    context = Context(
        name=name,
        version=version,
        model_dir=model_dir,
        files=model_dir / PROCESSING_DIR,
        metadata=dict(metadata),
        labels=labels,
        inputs=tuple(s.graph_name for s in sig.inputs),
        outputs=tuple(o.graph_name for o in sig.outputs),
        options=dict(doc.get("options") or {}),
    )
    try:
        return Processor(doc, sig, context)
    except ImportError as exc:
        raise ModelLoadError(f"processing: a library it needs is not installed: {exc}") from exc


def media_kind(kind: str) -> str:
    """The request's media type for processing (image/jpg is what some clients send for JPEG)."""
    return "image/jpeg" if kind == "image/jpg" else kind


def unsupported(kind: str, processor: Processor, formats: Sequence[str]) -> UnsupportedMediaType:
    accepted = [*formats, *processor.raw_types]
    return UnsupportedMediaType(
        f"Content-Type {kind[:100]!r} is not supported; send {' or '.join(dict.fromkeys(accepted))}"
    )
