"""Delivery: SQS jobs -> signed POSTs through the egress guard, concurrently within a batch.

A job that is not done (a retry is scheduled, or it was released unattempted) is reported as a
batch item failure, so SQS keeps it; its visibility was already set to when it should come back.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.deliver import BATCH_MARGIN_SECONDS, Message

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
metrics = Metrics()
deliverer = services.deliverer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - BATCH_MARGIN_SECONDS
    messages = [Message(r["messageId"], r["body"], r["receiptHandle"]) for r in event["Records"]]
    report = deliverer.deliver(messages, deadline=deadline)
    for status, count in Counter(o.status for o in report.outcomes).items():
        metrics.add_metric(name=f"Delivery{status.capitalize()}", unit=MetricUnit.Count, value=count)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in report.failed]}
