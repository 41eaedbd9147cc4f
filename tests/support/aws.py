"""In-process AWS (moto) with the template's stateful resources, for integration tests of handlers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
from samtranslator.yaml_helper import yaml_parse

ROOT = Path(__file__).resolve().parents[2]


def template() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())  # type: ignore[no-any-return]


def default_parameters(tpl: dict[str, Any]) -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in tpl.get("Parameters", {}).items()}


def provision(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Create the template's tables, queues, key and bucket in the active moto; return the env vars."""
    tpl = template()
    params = default_parameters(tpl) | (overrides or {})
    resources = tpl["Resources"]
    ddb = boto3.client("dynamodb")
    sqs = boto3.client("sqs")
    names: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical, res in resources.items():
        if res["Type"] != "AWS::DynamoDB::Table":
            continue
        props = res["Properties"]
        kwargs: dict[str, Any] = {
            "TableName": logical,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props["BillingMode"],
        }
        if "GlobalSecondaryIndexes" in props:
            kwargs["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in props:
            kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        ddb.create_table(**kwargs)
        names[logical] = logical
    queues = [(k, r) for k, r in resources.items() if r["Type"] == "AWS::SQS::Queue"]
    # Dead-letter queues first, so redrive policies can name them.
    queues.sort(key=lambda kv: "RedrivePolicy" in kv[1]["Properties"])
    for logical, res in queues:
        props = res["Properties"]
        attributes = {k: str(props[k]) for k in ("VisibilityTimeout", "MessageRetentionPeriod") if k in props}
        if "RedrivePolicy" in props:
            redrive = props["RedrivePolicy"]
            target = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
            count = redrive["maxReceiveCount"]
            if isinstance(count, dict):
                count = params[count["Ref"]]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[target], "maxReceiveCount": int(count)}
            )
        url = sqs.create_queue(QueueName=logical, Attributes=attributes)["QueueUrl"]
        names[logical] = url
        arns[logical] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
    bucket = "artifact-cache-bucket"
    boto3.client("s3").create_bucket(Bucket=bucket)
    env = {
        "AUDIT_TABLE": names["AuditLogTable"],
        "INTEGRATIONS_TABLE": names["IntegrationsTable"],
        "IDEMPOTENCY_TABLE": names["IdempotencyTable"],
        "DELIVERY_QUEUE_URL": names["DeliveryQueue"],
        "DELIVERY_DLQ_URL": names["DeliveryDeadLetterQueue"],
        "FANOUT_FAILURE_QUEUE_URL": names["FanoutFailureQueue"],
        "SEALING_KEY_ID": key,
        "ARTIFACT_CACHE_BUCKET": bucket,
        "POWERTOOLS_METRICS_NAMESPACE": "Meshanics/Test",
        "POWERTOOLS_SERVICE_NAME": "meshanics-test",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "DELIVERY_RETRY_SCHEDULE": params["DeliveryRetrySchedule"],
        "DELIVERY_MAX_ATTEMPTS": params["DeliveryMaxAttempts"],
        "DELIVERY_MAX_RECEIVES": params["DeliveryMaxReceives"],
        "AUDIT_SHARDS": params["AuditShards"],
        # In-process tests read the subscription index afresh for every event (no cache to wait out).
        "SUBSCRIPTION_CACHE_MS": "0",
    }
    return env
