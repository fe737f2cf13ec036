"""The protocol every front end shares: predict / metadata / health as bytes in, status + bytes out.

The Lambda function, the FastAPI app and the SageMaker container call these methods and only
translate their transport; errors become responses here, in :func:`error_reply`, and nowhere else.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnxruntime as ort
import orjson

from mdk_runtime.codec import Feeds, decode_json, decode_npy, dump_json, dump_npy, load_json, response_doc
from mdk_runtime.errors import (
    MalformedRequest,
    MdkError,
    ModelLoadError,
    ModelNotReady,
    NotAcceptable,
    PayloadTooLarge,
    ResponseTooLarge,
    UnsupportedMediaType,
)
from mdk_runtime.media import JSON, NPY
from mdk_runtime.model import LoadReport, Model, load_model
from mdk_runtime.processing import Group, Processor, build_processor, media_kind, unsupported
from mdk_runtime.records import (
    CSV,
    JSONL,
    JSONL_ALIASES,
    Records,
    decode_csv,
    decode_jsonl,
    dump_csv,
    dump_jsonl,
    jsonl_answers,
    split_lines,
)
from mdk_runtime.records import predictions as record_answers
from mdk_runtime.spec import ModelSpec, read_spec

log = logging.getLogger(__name__)

API_FORMATS = (JSON, NPY)  # what the Lambda function reads
RECORD_FORMATS = (JSONL, CSV)  # what the SageMaker container reads besides (batch transform)
DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024  # Lambda's synchronous invoke payload; SageMaker's is the same
DEFAULT_MODEL_DIR = "/opt/ml/model"
EXAMPLE_BODY_LIMIT = 256 * 1024  # an example file larger than this is left out of /metadata


@dataclass(frozen=True, slots=True)
class Settings:
    """What the environment configures; parsed once in the init phase."""

    model_dir: Path = Path(DEFAULT_MODEL_DIR)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    threads: int | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read ``MDK_MODEL_DIR``, ``MDK_MAX_BODY_BYTES``, ``MDK_ORT_THREADS``; errors name the variable."""
        raw_limit = environ.get("MDK_MAX_BODY_BYTES", "").strip()
        if raw_limit and (not raw_limit.isdigit() or int(raw_limit) < 1):
            raise ModelLoadError(f"MDK_MAX_BODY_BYTES: expected a positive integer, got {raw_limit!r}")
        raw_threads = environ.get("MDK_ORT_THREADS", "").strip()
        if raw_threads and (not raw_threads.isdigit() or int(raw_threads) < 1):
            raise ModelLoadError(f"MDK_ORT_THREADS: expected a positive integer, got {raw_threads!r}")
        return cls(
            model_dir=Path(environ.get("MDK_MODEL_DIR") or DEFAULT_MODEL_DIR),
            max_body_bytes=int(raw_limit) if raw_limit else DEFAULT_MAX_BODY_BYTES,
            threads=int(raw_threads) if raw_threads else None,
        )


@dataclass(slots=True)
class Processed:
    """A request for a model with processing: its instances, their groups of feeds, and bad instances."""

    instances: list[Any]
    groups: list[Group]
    errors: dict[int, MdkError] = field(default_factory=dict)  # records only: bad lines, the rest still run


@dataclass(slots=True)
class Work:
    """A decoded request: its parts (one model run each), and how to answer once they ran."""

    kind: str  # the request's media type
    answer: str  # the response's media type
    parts: list[Feeds]
    records: Records | None = None  # JSON Lines / CSV: which record is in which part, and bad records
    processed: Processed | None = None  # a model with processing: instances and answers per instance

    @property
    def instances(self) -> int:
        return sum(b.n for b in self.parts)


@dataclass(frozen=True, slots=True)
class Reply:
    """A response, transport-free.  ``error`` is set for every non-2xx reply (for logs and metrics)."""

    status: int
    body: bytes
    content_type: str = JSON
    instances: int = 0
    error: MdkError | None = field(default=None, compare=False)

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else self.error.code


def response_too_large(size: int, limit: int, limit_name: str, answer: str) -> ResponseTooLarge:
    """The 413 for an answer over a synchronous response limit, with what the client can do instead."""
    smaller = (
        ""
        if answer == NPY
        else "ask for a binary answer (Accept: application/x-npy, for a model with one numeric output), "
    )
    return ResponseTooLarge(
        f"the response would be {size:,} bytes, over the {limit:,}-byte limit of {limit_name}; "
        f"send fewer instances per request, {smaller}or score large inputs with batch transform "
        "(a JSON Lines file in the batch inbox)"
    )


def error_reply(exc: BaseException, *, logged: bool = True) -> Reply:
    """The single place where an exception becomes an HTTP response. ``logged=False``: an expected
    server-side refusal its caller logs once itself (the container's 503s while its model loads)."""
    if not isinstance(exc, MdkError):
        log.error("unexpected error", exc_info=exc)
        exc = MdkError("internal error; the incident is logged")
    elif exc.status >= 500 and logged:
        log.error("%s: %s", exc.code, exc.message, exc_info=exc.__cause__ or exc)
    return Reply(exc.status, dump_json(exc.to_body()), JSON, error=exc)


def media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """``"Application/JSON; charset=UTF-8"`` -> ``("application/json", {"charset": "utf-8"})``."""
    if not header:
        return "", {}
    if header in (JSON, NPY):
        return header, {}
    kind, _, rest = header.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"').lower()
    return kind.strip().lower(), params


def negotiate(accept: str | None, offers: tuple[str, ...] = (JSON, NPY), default: str = JSON) -> str:
    """The response type for an Accept among ``offers``; wildcards get ``default``; 406 if none fits."""
    if not accept or accept in ("*/*", default):
        return default
    if accept in offers:
        return accept
    best, best_q, best_specific = "", 0.0, False
    for item in accept.split(","):
        kind, params = media_type(item)
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if kind in ("*/*", "*") or (kind.endswith("/*") and default.startswith(kind[:-1])):
            offer, specific = default, False
        elif kind in offers or (kind in JSONL_ALIASES and JSONL in offers):
            offer, specific = (JSONL if kind in JSONL_ALIASES else kind), True
        else:
            continue
        # Equal weights: a named type wins over a wildcard (application/x-npy over */*).
        if q > best_q or (q == best_q and q > 0 and specific and not best_specific):
            best, best_q, best_specific = offer, q, specific
    if not best:
        raise NotAcceptable(
            f"cannot produce any type in Accept: {accept[:100]!r}; accept {' or '.join(offers)}"
        )
    return best


class InferenceService:
    """predict / metadata / health for one model; never raises, always replies."""

    def __init__(
        self,
        model: Model | None,
        *,
        report: LoadReport | None = None,
        load_error: MdkError | None = None,
        spec: ModelSpec | None = None,
        settings: Settings = Settings(),
        processor: Processor | None = None,
    ) -> None:
        if model is None and load_error is None:
            raise ValueError("a service needs a model or the error that prevented loading it")
        self.model = model
        self.processor = processor
        # A model that fails to load still has a name and version when its spec could be read.
        self.spec = model.spec if model is not None else spec
        self.report = report
        self.load_error = load_error
        self.settings = settings
        self._metadata = self._build_metadata()
        self._health = self._build_health()

    @classmethod
    def load(cls, settings: Settings, *, providers: list[str] | None = None) -> InferenceService:
        """Load the bundle named by the settings; a broken model gives a service that answers 503."""
        spec: ModelSpec | None = None
        try:
            spec = read_spec(settings.model_dir)
            # A model with processing warms up through it (below), with a request as its clients send.
            model, report = load_model(
                settings.model_dir,
                threads=settings.threads,
                providers=providers,
                warm_up=spec.processing is None,
            )
            processor = processor_of(model, settings.model_dir)
            service = cls(model, report=report, settings=settings, processor=processor)
            if processor is not None:
                service.report = dataclasses.replace(report, **service.processed_warm_up())
                service._health = service._build_health()
        except MdkError as exc:
            log.error("model failed to load: %s", exc.message)
            return cls(None, load_error=exc, spec=spec, settings=settings)
        loaded, loaded_report = service.model, service.report
        assert loaded is not None
        assert loaded_report is not None
        model, report = loaded, loaded_report
        log.info(
            "model loaded",
            extra={
                "model": model.spec.name,
                "version": model.spec.version,
                "load_ms": round(report.load_ms, 1),
                "warmup_ms": round(report.warmup_ms, 1),
                "warmup": report.warmup,
                "threads": report.threads,
                "providers": list(report.providers),
            },
        )
        return service

    @property
    def name(self) -> str:
        return self.spec.name if self.spec is not None else "unknown"

    @property
    def version(self) -> str:
        return self.spec.version if self.spec is not None else "unknown"

    # -- routes ---------------------------------------------------------------------------------

    def predict(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        *,
        formats: tuple[str, ...] = API_FORMATS,
        deadline: float | None = None,
        request_id: str | None = None,
    ) -> Reply:
        """Decode, run and encode in one go (the Lambda function's path); a run still going at
        ``deadline`` (``time.monotonic()``) is stopped and answered 504. ``request_id``: put in a JSON
        answer as ``id`` and ``ids`` (see :func:`with_ids`)."""
        try:
            work = self.prepare(body, content_type, accept, formats=formats)
            assert self.model is not None
            outputs = [self.model.run(b.feeds, b.n, deadline=deadline) for b in work.parts]
            return self.finish(work, outputs, request_id=request_id)
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            return error_reply(exc)

    def metadata(self) -> Reply:
        if self._metadata is None:
            return error_reply(self._not_ready())
        return Reply(200, self._metadata)

    def health(self) -> Reply:
        if self._health is None:
            return error_reply(self._not_ready())
        return Reply(200, self._health)

    # -- internals ------------------------------------------------------------------------------

    def processed_warm_up(self) -> dict[str, Any]:
        """One request through the model's processing before traffic, as its clients send it: its
        example (an image, a text, a JSON request), else for a declared image or text input a synthetic
        one (a grey image of the model's size, a short text). A failure is a load error (503), not the
        first client's; a handler model without an example is ``degraded`` until it has one."""
        from mdk_runtime.model import WarmUp

        processor, spec = self.processor, self.spec
        assert processor is not None
        assert spec is not None
        example = (spec.processing or {}).get("example")
        started = time.perf_counter()
        source: Literal["example", "synthetic"] = "example"
        if isinstance(example, dict) and "file" in example:
            body = (self.settings.model_dir / str(example["file"])).read_bytes()
            reply = self.predict(body, str(example.get("content_type") or "application/octet-stream"), JSON)
        elif spec.example is not None:
            reply = self.predict(dump_json(spec.example), JSON, JSON)
        elif (synthetic := processor.synthetic_request()) is not None:
            body, kind = synthetic
            source = "synthetic"
            reply = self.predict(body, kind, JSON)
        else:
            error = (
                "the model's handler reads its own inputs, so the kit cannot make one up: set `example` "
                "in models.yaml (a file its clients send, or a JSON request)"
            )
            return {"warm": WarmUp("failed", error=error), "warmup_ms": 0.0}
        if reply.status != 200:
            detail = reply.error.message if reply.error is not None else f"status {reply.status}"
            raise ModelLoadError(
                f"warm-up with the model's {source} request through its processing failed: {detail}"
            )
        return {"warm": WarmUp(source), "warmup_ms": (time.perf_counter() - started) * 1e3}

    def _not_ready(self) -> ModelNotReady:
        reason = self.load_error.message if self.load_error is not None else "model not loaded"
        return ModelNotReady(f"model is not ready: {reason}")

    def prepare(
        self,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        *,
        formats: tuple[str, ...] = API_FORMATS,
    ) -> Work:
        """Check and decode a request (raises MdkError); its parts then run, then :meth:`finish`."""
        model = self.model
        if model is None:
            raise self._not_ready()
        limit = self.settings.max_body_bytes
        if len(body) > limit:
            raise PayloadTooLarge(
                f"request body is {len(body)} bytes, the limit is {limit} (the synchronous invoke payload); "
                "score larger inputs with batch transform (a JSON Lines file in the batch inbox)"
            )
        kind, params = media_type(content_type)
        kind = JSONL if kind in JSONL_ALIASES else (kind or JSON)
        processor = self.processor
        if processor is not None and processor.takes_input:
            return self._prepare_processed(body, media_kind(kind), params, content_type, accept, formats)
        if kind not in formats:
            raise UnsupportedMediaType(
                f"Content-Type {kind[:100]!r} is not supported; send {' or '.join(formats)}"
            )
        if params.get("charset", "utf-8") not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {params['charset'][:20]!r} is not supported; send UTF-8")
        sig = model.signature
        if kind in RECORD_FORMATS:
            answer = negotiate(accept, (kind, JSONL, CSV, JSON) if kind == CSV else (JSONL, CSV, JSON), kind)
            records = decode_jsonl(body, sig) if kind == JSONL else decode_csv(body, sig)
            return Work(kind, answer, [part for _, part in records.groups], records)
        answer = negotiate(accept, (JSON, NPY, JSONL) if JSONL in formats else (JSON, NPY), JSON)
        part = decode_json(load_json(body), sig) if kind == JSON else decode_npy(body, sig)
        return Work(kind, answer, [part])

    def _prepare_processed(  # noqa: PLR0917 - prepare()'s arguments, passed on
        self,
        body: bytes,
        kind: str,
        params: dict[str, str],
        content_type: str | None,
        accept: str | None,
        formats: tuple[str, ...],
    ) -> Work:
        """Instances for the model's processing, preprocessed into groups of feeds."""
        processor = self.processor
        assert processor is not None
        if params.get("charset", "utf-8") not in ("utf-8", "utf8"):
            raise UnsupportedMediaType(f"charset {params['charset'][:20]!r} is not supported; send UTF-8")
        if kind == JSONL and JSONL in formats:  # batch transform: one instance per line, bad lines kept
            answer = negotiate(accept, (JSONL, JSON), JSONL)
            lines = split_lines(body)
            instances: list[Any] = []
            errors: dict[int, MdkError] = {}
            for i, line in enumerate(lines):
                try:
                    instances.append(processor.record(orjson.loads(line), i))
                except orjson.JSONDecodeError as exc:
                    errors[i] = MalformedRequest(f"line {i + 1}: not valid JSON: {exc}")
                    instances.append(None)
                except MdkError as exc:
                    errors[i] = exc
                    instances.append(None)
            good = [i for i in range(len(lines)) if i not in errors]
            groups, bad = processor.preprocess_each(
                [instances[i] for i in good], lambda j: f"line {good[j] + 1}"
            )
            for j, refusal in bad.items():
                errors[good[j]] = refusal
            groups = [Group([good[j] for j in g.indices], g.feeds) for g in groups]
            processed = Processed(instances, groups, errors)
            return Work(kind, answer, [Feeds(g.feeds, g.n, "instances") for g in groups], processed=processed)
        if kind != JSON and not processor.accepts(kind):
            raise unsupported(kind, processor, (JSON, JSONL) if JSONL in formats else (JSON,))
        answer = negotiate(accept, (JSON, JSONL) if JSONL in formats else (JSON,), JSON)
        doc = load_json(body) if kind == JSON else None
        instances = processor.instances(body, kind, content_type, doc)
        if kind == JSON:
            where = "instances[{}]"
        elif len(instances) == 1:
            where = "body"
        else:
            where = "files[{}]"
        groups = processor.preprocess(instances, where.format)
        return Work(
            kind,
            answer,
            [Feeds(g.feeds, g.n, "instances") for g in groups],
            processed=Processed(instances, groups),
        )

    def finish(self, work: Work, outputs: list[dict[str, Any]], *, request_id: str | None = None) -> Reply:
        """Encode the outputs of the work's parts (raises MdkError, e.g. a tensor .npy cannot carry).
        A JSON answer gets ``id``/``ids`` when ``request_id`` is given; JSON Lines, CSV and .npy do not
        (their callers send the id as a header)."""
        assert self.model is not None
        sig = self.model.signature
        if self.processor is not None:
            return self._finish_processed(work, outputs, request_id)
        if work.records is not None:
            if work.answer == JSONL:
                body = jsonl_answers(sig, work.records, outputs)
            elif work.answer == CSV:
                body = dump_csv(record_answers(sig, work.records, outputs))
            else:
                answers = record_answers(sig, work.records, outputs)
                body = dump_json(with_ids({"predictions": answers}, request_id, len(answers)))
            return Reply(200, body, work.answer, instances=work.instances)
        part, out = work.parts[0], outputs[0]
        if work.answer == NPY:
            return Reply(200, dump_npy(sig, out), NPY, instances=part.n)
        doc = response_doc(sig, out, part.n, part.form)
        if work.answer == JSONL and "predictions" in doc:
            return Reply(200, dump_jsonl(list(doc["predictions"])), JSONL, instances=part.n)
        return Reply(200, dump_json(with_ids(doc, request_id, part.n)), JSON, instances=part.n)

    def _finish_processed(
        self, work: Work, outputs: list[dict[str, Any]], request_id: str | None = None
    ) -> Reply:
        """Answers per instance (or record) from the model's postprocessing."""
        processor = self.processor
        assert processor is not None
        processed = work.processed
        if processed is None:  # declared output only: the request was tensors
            if work.records is not None:
                groups = [Group(lines, b.feeds) for lines, b in work.records.groups]
                count, errors = work.records.count, dict(work.records.errors)
            else:
                groups = [Group(list(range(b.n)), b.feeds) for b in work.parts]
                count, errors = work.instances, {}
            instances: list[Any] = [None] * count
        else:
            groups, instances, errors = processed.groups, processed.instances, processed.errors
            count = len(instances)
        answers = processor.answers(groups, outputs, instances, count)
        for line, error in errors.items():
            answers[line] = error.to_body()
        if work.answer == JSONL:
            return Reply(200, dump_jsonl(answers), JSONL, instances=count - len(errors))
        if work.answer == NPY:
            raise NotAcceptable("this model answers in JSON (it has processing); accept application/json")
        if work.answer == CSV:
            return Reply(200, dump_csv(answers), CSV, instances=count - len(errors))
        doc = with_ids({"predictions": answers}, request_id, len(answers))
        return Reply(200, dump_json(doc), JSON, instances=count - len(errors))

    def _build_metadata(self) -> bytes | None:
        if self.model is None:
            return None
        spec, report = self.model.spec, self.report
        doc: dict[str, Any] = {
            "name": spec.name,
            "version": spec.version,
            "artifact_sha256": spec.sha256,
            "description": spec.description,
            "schema": self.model.signature.to_json(),
            "formats": {"request": [JSON, NPY], "response": [JSON, NPY]},
            "limits": {
                "max_body_bytes": self.settings.max_body_bytes,
                "max_instances": self.model.signature.max_instances,
            },
            "runtime": {
                "onnxruntime": ort.__version__,
                "providers": list(report.providers) if report else [],
                "threads": report.threads if report else None,
            },
        }
        if spec.example is not None:
            doc["example"] = spec.example
        elif self.processor is None and report is not None:
            synthetic = report.warm.request(self.model.signature)
            if synthetic is not None and len(dump_json(synthetic)) <= EXAMPLE_BODY_LIMIT:
                # What the synthetic warm-up ran on: the pre-traffic hook sends "example" when there is one.
                doc["example"] = synthetic
                doc["example_source"] = "synthetic"
        if self.processor is not None:
            doc["processing"] = self.processor.describe()
            example = (spec.processing or {}).get("example")
            example = example if isinstance(example, dict) else {}
            path = self.settings.model_dir / str(example["file"]) if "file" in example else None
            if path is not None and path.is_file() and path.stat().st_size <= EXAMPLE_BODY_LIMIT:
                # The example as a client sends it, for the pre-traffic hook and the printed examples.
                doc["example_body"] = {
                    "content_type": example.get("content_type"),
                    "b64": base64.b64encode(path.read_bytes()).decode("ascii"),
                }
            if self.processor.takes_input:
                doc["formats"]["request"] = [JSON, *self.processor.raw_types]
                doc["formats"]["response"] = [JSON]
        doc["graph_metadata"] = graph_metadata(self.model)
        return dump_json(doc)

    def _build_health(self) -> bytes | None:
        if self.model is None:
            return None
        doc: dict[str, Any] = {"status": "ok", "model": self.name, "version": self.version}
        if self.report is not None:
            # "degraded": loaded, but no warm-up inference ran (still 200: see LoadReport.status).
            doc["status"] = self.report.status
            doc["warmup"] = self.report.warmup
            if self.report.warmup_error is not None:
                doc["warmup_error"] = self.report.warmup_error
        return dump_json(doc)


def instance_ids(request_id: str, n: int) -> list[str]:
    """One id per instance: the request's own for a one-instance request, ``<rid>:<i>`` for more."""
    return [request_id] if n == 1 else [f"{request_id}:{i}" for i in range(n)]


def with_ids(doc: dict[str, Any], request_id: str | None, n: int) -> dict[str, Any]:
    """The answer document with ``id`` and ``ids`` (feedback is posted by them), added in place before
    its one serialisation; unchanged without a request id."""
    if request_id:
        doc["id"] = request_id
        doc["ids"] = instance_ids(request_id, n)
    return doc


def graph_metadata(model: Model) -> dict[str, str]:
    """The ONNX graph's ``metadata_props`` (a model's own facts: a character dictionary, its labels)."""
    try:
        props = model.session.get_modelmeta().custom_metadata_map
    except Exception:  # noqa: BLE001 - a session stand-in without metadata
        return {}
    return {str(k): str(v) for k, v in props.items()}


def processor_of(model: Model, model_dir: Path) -> Processor | None:
    """The model's processing, loaded from its bundle (None when it has none); ModelLoadError if broken."""
    spec = model.spec
    return build_processor(
        spec.processing,
        model.signature,
        name=spec.name,
        version=spec.version,
        model_dir=model_dir,
        metadata=graph_metadata(model),
        labels=spec.labels,
    )
