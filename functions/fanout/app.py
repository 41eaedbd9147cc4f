"""Fan-out: audit-log stream (INSERT only) -> one queued delivery job per endpoint the event was matched to."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.model import AuditRecord
from meshanics.store.audit import record_from_image

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
metrics = Metrics()
fanout = services.fanout()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records: dict[str, AuditRecord] = {}
    unreadable: list[str] = []
    for record in DynamoDBStreamEvent(event).records:
        assert record.dynamodb is not None and record.dynamodb.sequence_number is not None
        try:
            records[record.dynamodb.sequence_number] = record_from_image(record.dynamodb.new_image)
        except (KeyError, TypeError, ValueError):
            logger.exception("unreadable audit record", extra={"sequence_number": record.dynamodb.sequence_number})
            unreadable.append(record.dynamodb.sequence_number)  # retried, then the failure queue
    report = fanout.fan_out(records)
    metrics.add_metric(name="JobsSent", unit=MetricUnit.Count, value=report.sent)
    failed = sorted({*unreadable, *report.failed_items}, key=int)
    return {"batchItemFailures": [{"itemIdentifier": item} for item in failed]}
