"""A loaded model: the onnxruntime session, its signature, and batching around fixed batch sizes."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from mdk_runtime.deadline import QUIET_RUN_LOG, WATCHDOG
from mdk_runtime.errors import (
    InferenceFailed,
    InferenceTimeout,
    InputRejectedByModel,
    MdkError,
    ModelLoadError,
)
from mdk_runtime.schema import (
    SYNTHETIC_MAX_ELEMENTS,
    Signature,
    build_signature,
    example_feeds,
    example_request,
    synthetic_elements,
    synthetic_sizes,
)
from mdk_runtime.spec import ModelSpec, read_spec

log = logging.getLogger(__name__)

LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one full vCPU at 1,769 MB, up to 6 at 10,240 MB
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"

# Which failures of a run are the request's (422 input_rejected_by_model) and which the server's (500).
# onnxruntime's Python exception type is the status code of the failed run:
# * InvalidArgument and Fail: a kernel refused the values it was given. Kernels return
#   INVALID_ARGUMENT for a value outside what they accept ("indices element out of data bounds",
#   "invalid expand shape"), and FAIL for a check that failed inside them (a Reshape to a size that
#   does not hold the data, an allocation for a size computed from the values). Before any of this
#   runs, the kit has checked each input's rank, fixed sizes and dtype against the schema, and the
#   model has run its warm-up (and, on a rollout, the pre-traffic smoke test): what is new in this
#   run is the request's values, so the failure is the client's to fix.
# * Everything else is a server fault, 500 inference_failed, logged at ERROR with onnxruntime's detail:
#   RuntimeException (an exception inside onnxruntime itself), EPFail and DeviceReset (the execution
#   provider or its GPU failed), EngineError, NotImplemented (no kernel for a type on this provider),
#   and any other exception (a broken or closed session).
INPUT_REFUSALS: tuple[type[BaseException], ...] = (ort_state.InvalidArgument, ort_state.Fail)
# "... while running Gather node. Name:'...' Status Message: ...": the operator's type is the model's.
_FAILED_OP = re.compile(r"while running (\w{1,64}) node")


def lambda_vcpus(memory_mb: int) -> int:
    """vCPUs worth a thread for a Lambda function of this size: 1 up to 3,008 MB, 2 from ~3.1 GB, 6 at 10 GB.

    Lambda's CPU share is memory / 1,769 MB (5.79 at the 10,240 MB top, where AWS gives 6 vCPUs);
    a share is rounded up only from .75, since a thread on a sliver of a vCPU just contends.
    """
    return max(1, min(6, int(memory_mb / LAMBDA_MB_PER_VCPU + 0.25)))


def default_threads(environ: Mapping[str, str] = os.environ) -> int:
    """onnxruntime intra-op threads: ``MDK_ORT_THREADS``, else the function's vCPUs, else this host's.

    In Lambda the host reports more CPUs than the function may use; a thread beyond the function's
    share only adds contention.
    """
    explicit = environ.get("MDK_ORT_THREADS", "").strip()
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise ModelLoadError(f"MDK_ORT_THREADS: expected a positive integer, got {explicit!r}")
        return int(explicit)
    memory = environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "").strip()
    if memory.isdigit():
        return lambda_vcpus(int(memory))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def session_options(threads: int) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3  # errors only; warnings about unused initializers are noise
    return opts


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """Keep the requested execution providers this onnxruntime build has; always end with CPU."""
    available = set(ort.get_available_providers())
    wanted = list(requested or [CPU_PROVIDER])
    chosen = [p for p in wanted if p in available]
    missing = [p for p in wanted if p not in available]
    if missing:
        log.warning(
            "execution providers not available in this onnxruntime build, falling back: %s",
            ", ".join(missing),
            extra={"available": sorted(available)},
        )
    if CPU_PROVIDER not in chosen:
        chosen.append(CPU_PROVIDER)
    if CUDA_PROVIDER in chosen and hasattr(ort, "preload_dlls"):
        # onnxruntime-gpu finds CUDA and cuDNN from NVIDIA's pip wheels only once they are preloaded.
        try:
            ort.preload_dlls()
        except Exception as exc:  # noqa: BLE001 - logged; the session then falls back to the CPU
            log.warning("could not preload the CUDA libraries: %s", exc)
    return chosen


@dataclass(frozen=True, slots=True)
class WarmUp:
    """What the warm-up inference ran on, or why none ran.

    ``source`` is ``"example"`` (the spec's example request), ``"synthetic"`` (zeros shaped by the
    schema, every free dimension ``size``), ``"failed"`` (no synthetic input ran: ``error`` says why) or
    ``"disabled"``.
    """

    source: Literal["example", "synthetic", "failed", "disabled"]
    size: int | None = None
    error: str | None = None

    def request(self, signature: Signature) -> dict[str, Any] | None:
        """The synthetic request body that warmed the model (``instances`` form), None if it was not one."""
        return example_request(signature, self.size) if self.size is not None else None


@dataclass(frozen=True, slots=True)
class LoadReport:
    """How loading went: what the health and metadata routes and the logs report."""

    load_ms: float
    warmup_ms: float
    threads: int
    providers: tuple[str, ...]
    warm: WarmUp

    @property
    def warmup(self) -> str:
        """``example``, ``synthetic``, ``failed`` or ``disabled``."""
        return self.warm.source

    @property
    def warmup_error(self) -> str | None:
        """Why no warm-up inference ran (``failed``), with what to do about it."""
        return self.warm.error

    @property
    def status(self) -> Literal["ok", "degraded"]:
        """``degraded``: the model loaded but no warm-up inference ran, so nothing has proved it answers.

        Health still answers 200 then: SageMaker takes only a 200 from ``/ping`` as healthy and never
        puts the endpoint in service otherwise ("How Your Container Should Respond to Health Check (Ping)
        Requests" in "Use Your Own Inference Code with Hosting Services",
        https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-inference-code.html), and a model
        whose synthetic input was only a bad guess may well answer real requests.  The reason is in the
        health document; what stops a rollout that cannot answer is the pre-traffic check's prediction.
        """
        return "degraded" if self.warm.source == "failed" else "ok"


class Model:
    """An onnxruntime session with the model's signature; thread-safe like the session itself."""

    def __init__(self, session: ort.InferenceSession, spec: ModelSpec, signature: Signature) -> None:
        self.session = session
        self.spec = spec
        self.signature = signature
        self._output_names = [o.graph_name for o in signature.outputs]

    @classmethod
    def from_session(cls, session: ort.InferenceSession, spec: ModelSpec) -> Model:
        return cls(session, spec, build_signature(session.get_inputs(), session.get_outputs(), spec))

    def run(self, feeds: dict[str, np.ndarray], n: int, *, deadline: float | None = None) -> dict[str, Any]:
        """Outputs by graph name for ``n`` instances, splitting around a fixed batch size.

        With a ``deadline`` (``time.monotonic()``), a run still going then is stopped: InferenceTimeout.
        """
        size = self.signature.batch_size
        if size is None or n == size:
            return dict(zip(self._output_names, self._run(feeds, deadline), strict=True))
        parts: list[list[Any]] = []
        for start in range(0, n, size):
            stop = min(start + size, n)
            chunk = {k: v[start:stop] for k, v in feeds.items()}
            short = size - (stop - start)
            if short:  # pad the last chunk by repeating its last row; the padding is dropped below
                chunk = {k: np.concatenate([v, np.repeat(v[-1:], short, axis=0)]) for k, v in chunk.items()}
            outs = self._run(chunk, deadline)
            parts.append([o[: stop - start] if _rows(o) == size else o for o in outs])
        return {name: _join([p[i] for p in parts]) for i, name in enumerate(self._output_names)}

    def _run(self, feeds: dict[str, np.ndarray], deadline: float | None = None) -> list[Any]:
        watch = None
        if deadline is not None:
            budget = deadline - time.monotonic()
            if budget <= 0:
                raise InferenceTimeout("the request's deadline passed before inference could start")
            watch = WATCHDOG.watch(deadline)
        try:
            return list(
                self.session.run(self._output_names, feeds, watch.options if watch else QUIET_RUN_LOG)
            )
        except Exception as exc:
            if watch is not None and watch.options.terminate:
                raise InferenceTimeout(
                    f"inference was stopped after {budget:.1f} s, at the request's deadline "
                    "(the time left to answer before the platform's timeout)"
                ) from exc
            if isinstance(exc, INPUT_REFUSALS):
                raise self._refusal(exc) from None  # no cause: its message quotes the client's values
            raise InferenceFailed(f"inference failed ({type(exc).__name__})") from exc
        finally:
            if watch is not None:
                WATCHDOG.release(watch)

    def _refusal(self, exc: BaseException) -> InputRejectedByModel:
        """The client's answer for a run the model refused: which inputs, which operator, no values."""
        names = [s.name for s in self.signature.inputs]
        found = _FAILED_OP.search(str(exc)[:200])
        where = f"its {found.group(1)} operator" if found else "onnxruntime"
        log.warning(
            "the model refused the request's values",
            extra={"status": type(exc).__name__, "operator": found.group(1) if found else None},
        )
        return InputRejectedByModel(
            f"the model refused the values of input{'s' if len(names) > 1 else ''} "
            f"{', '.join(repr(n) for n in names)}: {where} cannot run on them (e.g. an index outside "
            "its table, or a shape it cannot produce); check the values against what the model accepts",
            field=names[0] if len(names) == 1 else None,
        )

    def warm_up(self) -> WarmUp:
        """One inference before traffic: the spec's example if any, else zeros of the right shape.

        A failing example is a load error (the spec promises it works).  Synthetic inputs are a guess:
        each size of :func:`~mdk_runtime.schema.synthetic_sizes` is tried for the free dimensions, and
        the first that runs is kept; when none runs the warm-up is ``failed``, which health reports.
        """
        if self.spec.example is not None:
            from mdk_runtime.codec import decode_json

            try:
                part = decode_json(self.spec.example, self.signature)
                self.run(part.feeds, part.n)
            except MdkError as exc:
                raise ModelLoadError(
                    f"warm-up with the spec's example request failed: {exc.message}"
                ) from exc
            return WarmUp("example")
        sizes = synthetic_sizes(self.signature)
        tried: list[int] = []
        reason, detail = "its inputs are too large to guess", ""
        for size in sizes:
            if size > 1 and synthetic_elements(self.signature, size) > SYNTHETIC_MAX_ELEMENTS:
                continue  # too large a guess for a cold start
            tried.append(size)
            try:
                # The session itself, not run(): these are the kit's zeros, so onnxruntime's detail may
                # be kept, and a refused guess is no client's request to log as refused.
                self.session.run(self._output_names, example_feeds(self.signature, size=size), QUIET_RUN_LOG)
            except Exception as exc:  # noqa: BLE001 - any failure: the next size, then "failed"
                detail = (str(exc).splitlines() or [""])[0][:500]
                found = _FAILED_OP.search(detail[:200])
                reason = f"onnxruntime {type(exc).__name__}" + (
                    f" in its {found.group(1)} operator" if found else ""
                )
                continue
            return WarmUp("synthetic", size=size)
        what = (
            f"zeros, free dimensions of size {', '.join(map(str, tried))}"
            if len(sizes) > 1
            else "zeros of the inputs' shapes"
        )
        error = (
            f"no synthetic input ran ({what}): {reason}; add `example:` (a request that works, inline "
            "or a JSON file) to this model in the config (models.yaml)"
        )
        log.warning("synthetic warm-up failed: %s", error, extra={"onnxruntime": detail})
        return WarmUp("failed", error=error)


def _rows(value: Any) -> int | None:
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else None
    return len(value) if isinstance(value, list) else None


def _join(parts: list[Any]) -> Any:
    if isinstance(parts[0], np.ndarray) and parts[0].ndim:
        return np.concatenate(parts, axis=0)
    if isinstance(parts[0], list):
        return [item for part in parts for item in part]
    return parts[-1]


def load_model(
    model_dir: Path,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    warm_up: bool = True,
) -> tuple[Model, LoadReport]:
    """Load a bundle (``model.onnx`` + ``mdk-model.json``) and warm it up; raise ModelLoadError."""
    spec = read_spec(model_dir)
    artifact = model_dir / spec.artifact
    if not artifact.is_file():
        raise ModelLoadError(f"model artifact not found: {artifact}")
    threads = threads or default_threads()
    chosen = resolve_providers(providers)
    started = time.perf_counter()
    try:
        session = ort.InferenceSession(str(artifact), sess_options=session_options(threads), providers=chosen)
    except Exception as exc:
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"onnxruntime cannot load {artifact.name}: {reason}") from exc
    loaded = time.perf_counter()
    running = session.get_providers()
    if chosen[0] != CPU_PROVIDER and chosen[0] not in running:
        log.warning("%s could not start (no GPU or driver?): running on %s", chosen[0], ", ".join(running))
    model = Model.from_session(session, spec)
    warmup = model.warm_up() if warm_up else WarmUp("disabled")
    done = time.perf_counter()
    return model, LoadReport(
        load_ms=(loaded - started) * 1e3,
        warmup_ms=(done - loaded) * 1e3,
        threads=threads,
        providers=tuple(session.get_providers()),
        warm=warmup,
    )
