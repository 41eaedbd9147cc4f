"""Replays: endpoint recoveries from the replay queue, and the scheduled sweep (EventBridge Scheduler).

A replay queue message is one run of a recovery (`POST /v1/webhooks/{id}/recover`, or its one-time
schedule firing); the sweep's schedule sends `{"task": "sweep"}`: re-enqueue jobs never sent,
settle and replay the dead-letter queue.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
RUN_MARGIN_SECONDS = 15.0  # a batch of a recovery takes a few seconds; the progress write must fit


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        deadline = time.time() + context.get_remaining_time_in_millis() / 1000 - RUN_MARGIN_SECONDS

        def run(record: SQSRecord) -> None:
            services.endpoint_recovery().handle(
                record.body,
                owner=context.aws_request_id,
                deadline=deadline,
                receive_count=int(record.attributes.approximate_receive_count),
            )

        metrics.add_metric(name="RecoveryRuns", unit=MetricUnit.Count, value=len(event["Records"]))
        return dict(process_partial_response(event=event, record_handler=run, processor=processor, context=context))
    report = services.replayer().run()
    for name, value in report.as_dict().items():
        metrics.add_metric(name="".join(p.capitalize() for p in name.split("_")), unit=MetricUnit.Count, value=value)
    logger.info("sweep finished", extra=report.as_dict())
    return report.as_dict()
