"""Fan-out: audit-log stream (INSERT only) -> one delivery record and queued job per subscribed endpoint."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import audit, services
from meshanics.deliveries import DeliveryJob

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    fan = services.fanout()
    planned: dict[str, list[DeliveryJob]] = {}

    def plan(record: DynamoDBRecord) -> None:
        assert record.dynamodb is not None and record.dynamodb.sequence_number is not None
        audit_record = audit.record_from_item(record.dynamodb.new_image)
        planned[record.dynamodb.sequence_number] = fan.plan(audit_record)

    with processor(records=event["Records"], handler=plan, lambda_context=context):
        processor.process()
    report = fan.commit(planned)
    metrics.add_metric(name="DeliveriesCreated", unit=MetricUnit.Count, value=report.created)
    metrics.add_metric(name="DuplicateDeliveriesSkipped", unit=MetricUnit.Count, value=report.duplicates)
    failures = processor.response()["batchItemFailures"]
    failures += [{"itemIdentifier": item} for item in sorted(report.failed_items)]
    return {"batchItemFailures": failures}
