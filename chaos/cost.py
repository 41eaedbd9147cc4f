"""Cost per million deliveries at AWS list prices, from what the functions actually did.

Lambda is priced from each invocation's measured duration (rounded up to the millisecond, as Lambda
bills) times the memory the template gives the function; requests are counted per service by the
local platform's metering of every AWS request the functions made. SQS requests made by Lambda's own
poller (one ReceiveMessage and one DeleteMessageBatch per SQS-triggered invocation under load) are
billed to the account too and are added; reads of a DynamoDB stream by a Lambda trigger are free.
Left out: CloudWatch Logs ingestion and metrics, X-Ray traces, data transfer, storage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# us-east-1 list prices (on-demand, no free tier), as they stood on the date below.
PRICES_DATE = "2026-12-01"
PRICES: dict[str, tuple[float, str]] = {
    "lambda_request": (0.20 / 1e6, "Lambda: per request ($0.20 per million)"),
    "lambda_gb_second_arm64": (0.0000133334, "Lambda arm64: per GB-second"),
    "dynamodb_write_unit": (0.625 / 1e6, "DynamoDB on-demand: per write request unit ($0.625 per million)"),
    "dynamodb_read_unit": (0.125 / 1e6, "DynamoDB on-demand: per read request unit ($0.125 per million)"),
    "sqs_request": (0.40 / 1e6, "SQS standard: per request, up to 64 KB ($0.40 per million)"),
    "kms_request": (0.03 / 1e4, "KMS: per request ($0.03 per 10,000)"),
}
# SQS-triggered functions: Lambda's poller receives and deletes on the account's bill.
POLLER_REQUESTS_PER_INVOCATION = 2


@dataclass(frozen=True)
class Usage:
    """What a phase of work used, summed over the functions that took part."""

    lambda_requests: int
    gb_seconds: float
    dynamodb_writes: int
    dynamodb_reads: int
    sqs_requests: int
    kms_requests: int
    aws_requests: int

    @classmethod
    def of(cls, usage: Mapping[str, Any], memory_mb: Mapping[str, int], sqs_triggered: set[str]) -> Usage:
        """From LocalPlatform.take_usage() (function -> FunctionUsage)."""
        requests: Counter[str] = Counter()
        invocations = 0
        gb_seconds = 0.0
        writes = reads = poller = 0
        for function, used in usage.items():
            invocations += used.invocations
            gb_seconds += used.billed_ms / 1000 * memory_mb[function] / 1024
            requests.update(used.requests)
            writes += used.dynamodb_writes
            reads += used.dynamodb_reads
            if function in sqs_triggered:
                poller += POLLER_REQUESTS_PER_INVOCATION * used.invocations
        by_service: Counter[str] = Counter()
        for name, count in requests.items():
            by_service[name.split(":", 1)[0]] += count
        return cls(
            lambda_requests=invocations,
            gb_seconds=gb_seconds,
            dynamodb_writes=writes,
            dynamodb_reads=reads,
            sqs_requests=by_service["sqs"] + poller,
            kms_requests=by_service["kms"],
            aws_requests=sum(by_service.values()) + poller,
        )

    def dollars(self) -> dict[str, float]:
        return {
            "Lambda requests": self.lambda_requests * PRICES["lambda_request"][0],
            "Lambda GB-seconds": self.gb_seconds * PRICES["lambda_gb_second_arm64"][0],
            "DynamoDB writes": self.dynamodb_writes * PRICES["dynamodb_write_unit"][0],
            "DynamoDB reads": self.dynamodb_reads * PRICES["dynamodb_read_unit"][0],
            "SQS requests": self.sqs_requests * PRICES["sqs_request"][0],
            "KMS requests": self.kms_requests * PRICES["kms_request"][0],
        }


def per_million(usage: Usage, deliveries: int) -> dict[str, Any]:
    """One row: the usage and its price scaled to a million deliveries."""
    scale = 1e6 / deliveries
    dollars = usage.dollars()
    return {
        "deliveries measured": deliveries,
        "AWS requests / delivery": usage.aws_requests / deliveries,
        "DynamoDB writes / delivery": usage.dynamodb_writes / deliveries,
        "Lambda GB-s / delivery": usage.gb_seconds / deliveries,
        **{f"{name} $/M": value * scale for name, value in dollars.items()},
        "total $ per million deliveries": sum(dollars.values()) * scale,
    }


def price_table() -> list[dict[str, Any]]:
    return [{"item": text, "USD": f"{price:.10g}", "as of": PRICES_DATE} for price, text in PRICES.values()]
