"""Delivery: SQS jobs -> signed POSTs through the egress guard, concurrently within a batch.

A job that is not done (a retry is scheduled, or it was released unattempted) is reported as a
batch item failure, so SQS keeps it; its visibility was already set to when it should come back.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.deliveries import DeliveryJob
from meshanics.delivery import BATCH_MARGIN_SECONDS, QueuedJob

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
    queued: list[QueuedJob] = []
    failures: list[dict[str, str]] = []
    ids: list[str] = []
    for record in event["Records"]:
        try:
            job = DeliveryJob.from_message(record["body"])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            logger.error("malformed delivery job", extra={"message_id": record["messageId"]})
            failures.append({"itemIdentifier": record["messageId"]})  # after its receives: the DLQ
            continue
        queued.append(QueuedJob(job, record["receiptHandle"]))
        ids.append(record["messageId"])
    for message_id, outcome in zip(ids, deliverer.deliver_batch(queued, deadline=deadline), strict=True):
        metrics.add_metric(name=f"Delivery{outcome.status.capitalize()}", unit=MetricUnit.Count, value=1)
        if not outcome.done:
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}
