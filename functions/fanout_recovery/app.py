"""Fan-out recovery: the fan-out failure queue -> the failed stream batches fanned out again.

Each message is handled on its own: one that raises is reported as a batch item failure (SQS keeps
it and hands it over again; its queue's redrive policy ends the retries), the others are done. A
plain loop over the records rather than Powertools' batch utility, whose import (the event data
classes, asyncio) would add about 20 ms to every cold start for what these lines do.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import services
from meshanics.config import settings

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"meshanics"})
metrics = Metrics()
recovery = services.fanout_recovery()


def recover(record: dict[str, Any]) -> None:
    """One SQS record of the failure queue; raises if it must be tried again."""
    receives = int(record["attributes"]["ApproximateReceiveCount"])
    recovery.handle(record["body"], last_receive=receives >= settings().fanout_recovery_max_receives)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        try:
            recover(record)
        except Exception as error:
            logger.warning(
                "a failed fan-out batch could not be recovered yet; its message stays queued",
                extra={"message_id": record["messageId"], "error": str(error)},
                exc_info=True,
            )
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
