"""Scheduled sweep (EventBridge): re-enqueue jobs never sent, settle and replay the dead-letter queue."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    report = services.replayer().run()
    for name, value in report.as_dict().items():
        metrics.add_metric(name="".join(p.capitalize() for p in name.split("_")), unit=MetricUnit.Count, value=value)
    logger.info("sweep finished", extra=report.as_dict())
    return report.as_dict()
