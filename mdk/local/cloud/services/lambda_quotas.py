"""Lambda's invocation payload quotas and the refusal they cause.

A leaf of the local Lambda (:mod:`mdk.local.cloud.services.lambda_`): both the Invoke API
(:mod:`mdk.local.cloud.moto_adapter`) and the function runner refuse by these numbers, and the adapter
cannot import the runner (the runner reaches moto through the adapter).
"""

from __future__ import annotations

#: The largest request a synchronous (RequestResponse) invoke takes: 6 MiB. AWS answers a larger one with
#: HTTP 413 ``RequestEntityTooLargeException``, "<n> byte payload is too large for the RequestResponse
#: invocation type (limit 6291456 bytes)" ("Invoke", https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html,
#: errors: "RequestTooLargeException ... HTTP Status Code: 413"; the error code boto3 receives is
#: RequestEntityTooLargeException).
SYNC_REQUEST_LIMIT = 6_291_456
#: The largest request of an asynchronous (Event) invoke: 1 MB ("Invoke": "For asynchronous invocations, the
#: maximum payload size is 1 MB").
ASYNC_REQUEST_LIMIT = 1_048_576
#: The largest response Lambda delivers: 6,291,556 bytes, as its error message says (measured here: the
#: emulator delivers exactly that many bytes and refuses one more). Over it, Invoke answers 200 with
#: ``X-Amz-Function-Error: Unhandled`` and this payload (a function error: API Gateway then answers 502).
RESPONSE_LIMIT = 6_291_556
RESPONSE_TOO_LARGE = {
    "errorType": "Function.ResponseSizeTooLarge",
    "errorMessage": f"Response payload size exceeded maximum allowed payload size ({RESPONSE_LIMIT} bytes).",
}


class InvokeRefused(Exception):
    """Lambda refused the invocation before any function ran: what the Invoke API answers with ``status``
    and ``error_type`` (the error code boto3 raises, e.g. ``RequestEntityTooLargeException``)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


def check_request(payload: bytes, *, asynchronous: bool = False) -> None:
    """Raise :class:`InvokeRefused` for a request over the invocation type's payload limit."""
    limit = ASYNC_REQUEST_LIMIT if asynchronous else SYNC_REQUEST_LIMIT
    if len(payload) > limit:
        kind = "Event" if asynchronous else "RequestResponse"
        raise InvokeRefused(
            413,
            "RequestEntityTooLargeException",
            f"{len(payload)} byte payload is too large for the {kind} invocation type (limit {limit} bytes)",
        )
