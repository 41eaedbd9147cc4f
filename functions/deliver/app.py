"""Delivery: SQS jobs -> signed POSTs through the egress guard, concurrently within a batch.

A failed attempt is reported as a batch item failure after its message was hidden for the retry
delay, so SQS redelivers it then; after the last attempt SQS moves it to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.config import settings
from meshanics.deliveries import DeliveryJob
from meshanics.delivery import DeliveryFailed, RetryScheduled

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
metrics = Metrics()
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# One bounded pool per container: POSTs of a batch run concurrently over shared keep-alive connections.
pool = ThreadPoolExecutor(max_workers=settings().delivery_concurrency, thread_name_prefix="deliver")
deliverer = services.deliverer()


async def deliver(record: SQSRecord) -> str:
    job = DeliveryJob.from_message(record.body)
    receive_count = int(record.attributes.approximate_receive_count)
    loop = asyncio.get_running_loop()
    try:
        outcome = await loop.run_in_executor(
            pool, lambda: deliverer.handle(job, receive_count=receive_count, receipt_handle=record.receipt_handle)
        )
    except RetryScheduled:
        metrics.add_metric(name="DeliveryRetryScheduled", unit=MetricUnit.Count, value=1)
        raise
    except DeliveryFailed:
        metrics.add_metric(name="DeliveryFailed", unit=MetricUnit.Count, value=1)
        raise
    metrics.add_metric(name=f"Delivery{outcome.status.capitalize()}", unit=MetricUnit.Count, value=1)
    return outcome.status


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deliverer.prefetch(DeliveryJob.from_message(r["body"]) for r in event["Records"])
    return async_process_partial_response(event=event, record_handler=deliver, processor=processor, context=context)
