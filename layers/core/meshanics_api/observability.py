"""The API functions' logging: one Powertools Logger whose format the core's and the door's loggers share.

No X-Ray SDK (about 75 ms of import): Lambda's active tracing records the invocation, and
interactive cold starts stay lean.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

H = TypeVar("H", bound=Callable[..., Any])

# The standard-library loggers whose records go out in the function's format.
LIBRARY_LOGGERS = ("meshanics", "meshanics_api")


def api_logger() -> Logger:
    """The function's Logger; the core's and the door's loggers write through its handler and level."""
    logger = Logger()
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name)  # registered now: their children, created on later imports, propagate to them
    copy_config_to_registered_loggers(source_logger=logger, include=set(LIBRARY_LOGGERS))
    return logger


def entry_point(logger: Logger) -> Callable[[H], H]:
    """The handler's decorator: the Lambda context in every log line, the API Gateway request id as
    the correlation id."""
    decorate: Callable[[H], H] = logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    return decorate
