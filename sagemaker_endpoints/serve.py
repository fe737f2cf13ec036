"""The container's entry point: SageMaker starts it as ``docker run <image> serve``.

Runs one uvicorn process (one copy of the model, one GPU) on ``0.0.0.0:8080``. On SIGTERM uvicorn
stops accepting, lets in-flight requests finish (up to 30 s), then the batcher drains and exits.
"""

from __future__ import annotations

import logging
import signal
import sys

import uvicorn

from mdk_runtime.errors import MdkError
from sagemaker_endpoints.server import ServerSettings, create_app

GRACEFUL_SHUTDOWN_S = 30


def configure_logging() -> None:
    """JSON logs (Powertools' formatter) for the runtime and the server; uvicorn's own at warning."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    logging.getLogger("mdk_runtime")
    logger = Logger(service="mdk-sagemaker")
    copy_config_to_registered_loggers(source_logger=logger, include={"mdk_runtime", "sagemaker_endpoints"})


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] != "serve":
        print(f"usage: serve (SageMaker's command); got {' '.join(args)!r}", file=sys.stderr)
        return 2
    configure_logging()
    try:
        settings = ServerSettings.from_env()
    except MdkError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    # uvicorn drains on SIGTERM, then re-raises it: exit 0 then, a clean stop rather than a kill.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
