"""One error hierarchy for every entry point; each error carries the HTTP status it maps to.

Handlers never build error responses themselves: they raise one of these and
:func:`mdk_runtime.service.error_reply` turns it into a response, the same way in the
Lambda function, the SageMaker container and the local server.  Messages name the field
and what was expected, and never echo the client's data back.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar


class MdkError(Exception):
    """Base class: an error with an HTTP status, a stable code and a message for the client."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    #: How a front end logs a refusal with this error (a 5xx is always logged at ERROR).
    log_level: ClassVar[int] = logging.INFO

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class MalformedRequest(MdkError):
    """The body cannot be decoded (bad JSON, bad .npy, wrong top-level shape)."""

    status = 400
    code = "malformed_request"


class InvalidInput(MdkError):
    """The body decodes but does not fit the model's inputs (shape, dtype, values)."""

    status = 422
    code = "invalid_input"


class InputRejectedByModel(InvalidInput):
    """The inputs fit the schema, but the model refused their values when it ran (an index outside a
    table, a shape it cannot expand or reshape to): the client's to fix, so a 422 and not a server
    error; logged at WARNING (a client may be probing the model). The message names the inputs and
    the operator, never the values (onnxruntime's own message quotes them)."""

    code = "input_rejected_by_model"
    log_level = logging.WARNING


class PayloadTooLarge(MdkError):
    """The body or the number of instances is above the synchronous limit."""

    status = 413
    code = "payload_too_large"


class ResponseTooLarge(PayloadTooLarge):
    """The answer would be over the platform's synchronous response limit (a small request can ask for
    a large answer): the client asks for fewer instances, a smaller format, or uses batch transform."""

    code = "response_too_large"


class UnsupportedMediaType(MdkError):
    """The Content-Type is not one the endpoint reads."""

    status = 415
    code = "unsupported_media_type"


class NotAcceptable(MdkError):
    """No response format in the Accept header can be produced."""

    status = 406
    code = "not_acceptable"


class RouteNotFound(MdkError):
    """No route matches the path (or the path names another model)."""

    status = 404
    code = "not_found"


class MethodNotAllowed(MdkError):
    """The route exists but not for this HTTP method."""

    status = 405
    code = "method_not_allowed"


class ModelNotReady(MdkError):
    """The model failed to load or warm up; the reason is in the message."""

    status = 503
    code = "model_not_ready"


class InferenceTimeout(MdkError):
    """Inference did not finish before the request's deadline and was stopped (the caller gets a 504
    with this reason instead of the platform cutting the connection)."""

    status = 504
    code = "inference_timeout"


class InferenceFailed(MdkError):
    """onnxruntime failed on an input that passed validation: a model or runtime fault."""

    status = 500
    code = "inference_failed"


class ModelLoadError(MdkError):
    """The artifact or its spec is missing, unreadable or unsupported."""

    status = 503
    code = "model_not_ready"


class ProcessingFailed(MdkError):
    """A model's own processing code (its handler's hooks) raised something other than the kit's errors:
    a server fault, logged with its traceback; the client sees which hook failed, never the traceback."""

    status = 500
    code = "processing_failed"
