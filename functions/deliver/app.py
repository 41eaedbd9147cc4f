"""Delivery: SQS jobs -> signed POSTs through the egress guard, concurrently within a batch.

A failed attempt is reported as a batch item failure after its message was hidden for the retry
delay, so SQS redelivers it then; after the last attempt SQS moves it to the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.deliveries import DeliveryJob
from meshanics.delivery import Outcome, QueuedJob

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
deliverer = services.deliverer()


class NotDeliveredYet(Exception):
    """The job stays queued: a retry is scheduled, or it moves on to the dead-letter queue."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    queued: dict[str, QueuedJob] = {}
    for record in event["Records"]:
        try:
            job = DeliveryJob.from_message(record["body"])
        except (ValueError, KeyError, TypeError):
            logger.error("malformed delivery job", extra={"message_id": record["messageId"]})
            continue  # reported failed below; after its receives it rests in the DLQ
        receive_count = int(record["attributes"]["ApproximateReceiveCount"])
        queued[record["messageId"]] = QueuedJob(job, receive_count, record["receiptHandle"])
    outcomes = dict(zip(queued, deliverer.deliver_batch(list(queued.values())), strict=True))

    def settle(record: SQSRecord) -> str:
        outcome: Outcome | None = outcomes.get(record.message_id)
        if outcome is None:
            raise NotDeliveredYet("malformed job, or its attempt could not be recorded")
        metrics.add_metric(name=f"Delivery{outcome.status.capitalize()}", unit=MetricUnit.Count, value=1)
        if not outcome.settled:
            raise NotDeliveredYet(outcome.result.attempt.error or outcome.status)
        return outcome.status

    return dict(process_partial_response(event=event, record_handler=settle, processor=processor, context=context))
