"""Fan-out: audit-log stream (INSERT only) -> one delivery record and queued job per subscribed endpoint."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import audit, services
from meshanics.envelope import AuditRecord

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records: dict[str, AuditRecord] = {}
    unreadable: list[str] = []
    for record in DynamoDBStreamEvent(event).records:
        assert record.dynamodb is not None and record.dynamodb.sequence_number is not None
        try:
            records[record.dynamodb.sequence_number] = audit.record_from_item(record.dynamodb.new_image)
        except (KeyError, TypeError, ValueError):
            logger.exception("unreadable audit record", extra={"sequence_number": record.dynamodb.sequence_number})
            unreadable.append(record.dynamodb.sequence_number)  # retried, then the failure queue
    report = services.fanout().fan_out(records)
    metrics.add_metric(name="DeliveriesCreated", unit=MetricUnit.Count, value=report.created)
    metrics.add_metric(name="DuplicateDeliveriesSkipped", unit=MetricUnit.Count, value=report.duplicates)
    failed = sorted({*unreadable, *report.failed_items}, key=int)
    return {"batchItemFailures": [{"itemIdentifier": item} for item in failed]}
