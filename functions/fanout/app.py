"""Fan-out: audit-log stream (INSERT only) -> one queued delivery job per endpoint the event was matched to.

Stream records are read as Lambda hands them over (DynamoDB JSON images), without Powertools' event
data classes: importing those (every event source's classes) would add about 10 ms to each cold start.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.model import AuditRecord
from meshanics.store.audit import record_from_values
from meshanics.store.items import from_item

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
metrics = Metrics()
fanout = services.fanout()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records: dict[str, AuditRecord] = {}
    unreadable: list[str] = []
    for record in event["Records"]:
        sequence_number: str = record["dynamodb"]["SequenceNumber"]
        try:
            records[sequence_number] = record_from_values(from_item(record["dynamodb"]["NewImage"]))
        except (KeyError, TypeError, ValueError):
            logger.exception("unreadable audit record", extra={"sequence_number": sequence_number})
            unreadable.append(sequence_number)  # retried, then the failure queue
    report = fanout.fan_out(records)
    metrics.add_metric(name="JobsSent", unit=MetricUnit.Count, value=report.sent)
    failed = sorted({*unreadable, *report.failed_items}, key=int)
    return {"batchItemFailures": [{"itemIdentifier": item} for item in failed]}
