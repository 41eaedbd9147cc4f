"""The template's stateful resources, created in the AWS emulation from the translated template.

The stateful subset (tables, queues, keys, buckets, ...) is deployed as one stack into moto's
CloudFormation, and physical ids come back from describe_stack_resources. Where moto's
CloudFormation is not faithful, the missing part is applied through the service API from the
template's own properties (see `_complete`):

* DynamoDB tables: moto ignores TimeToLiveSpecification and PointInTimeRecoverySpecification.
* KMS keys: moto stores KeyPolicy as an object, which breaks DescribeKey; it is put again as JSON.
* S3 buckets: moto ignores LifecycleConfiguration, PublicAccessBlockConfiguration,
  OwnershipControls and VersioningConfiguration.
* AWS::S3::BucketPolicy: moto's CloudFormation has no such type; it is put with PutBucketPolicy,
  minus TLS-only deny statements (the local emulation speaks plain HTTP on loopback).
* AWS::Scheduler::ScheduleGroup: no CloudFormation model in moto; created with CreateScheduleGroup
  (the functions create one-time schedules in it, which the local platform fires).

Everything else in the template (functions, roles, layers, event source mappings, the REST API,
schedule rules and schedules, permissions) is played by the local platform itself and gets a synthetic physical id,
so intrinsics that name it still resolve. Event source mappings in particular are never created in
moto: moto would invoke functions through Docker and drop records when that fails.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshanics_local.awsserver import client as new_client
from meshanics_local.template import ACCOUNT_ID, REGION, Resolver, Template, TemplateError

# One client per service and endpoint for a deployment (a client costs far more to make than a call).
client = functools.lru_cache(maxsize=None)(new_client)

# Deployed through moto's CloudFormation.
CLOUDFORMATION_TYPES = frozenset(
    {
        "AWS::DynamoDB::Table",
        "AWS::SQS::Queue",
        "AWS::KMS::Key",
        "AWS::KMS::Alias",
        "AWS::S3::Bucket",
        "AWS::SNS::Topic",
        "AWS::SSM::Parameter",
        "AWS::SecretsManager::Secret",
        "AWS::Logs::LogGroup",
    }
)
# Stateful, but moto's CloudFormation cannot create them: created through the service API.
API_TYPES = frozenset({"AWS::S3::BucketPolicy", "AWS::Scheduler::ScheduleGroup"})


@dataclass
class Resource:
    logical_id: str
    type: str
    physical_id: str
    attributes: dict[str, str] = field(default_factory=dict)
    created_by: str = "local platform"  # "cloudformation", "service API" or "local platform" (played locally)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "physical_id": self.physical_id,
            "created_by": self.created_by,
            **{_snake(k): v for k, v in self.attributes.items()},
        }


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


class Resources(dict[str, Resource]):
    """Logical id -> Resource, with Ref/GetAtt lookups for the intrinsic resolver."""

    def add(self, resource: Resource) -> None:
        self[resource.logical_id] = resource

    def ref(self, logical_id: str) -> str:
        if logical_id not in self:
            raise TemplateError(f"Ref to {logical_id}, which the local platform did not create")
        return self[logical_id].physical_id

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.get(logical_id)
        if resource is None:
            raise TemplateError(f"Fn::GetAtt of {logical_id}, which the local platform did not create")
        if attribute not in resource.attributes:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not known locally ({resource.type})")
        return resource.attributes[attribute]

    def by_arn(self, arn: str) -> Resource | None:
        return next((r for r in self.values() if arn in (r.attributes.get("Arn"), r.physical_id)), None)

    def resolver(self, template: Template, stack_name: str) -> Resolver:
        conditions = template.translated.get("Conditions")
        return Resolver(template.parameters, self.ref, self.get_att, stack_name, conditions)

    def describe(self) -> dict[str, Any]:
        return {k: r.describe() for k, r in self.items()}


# ------------------------------------------------------------------------------- deploy
def deploy(template: Template, endpoint: str | None, stack_name: str) -> Resources:
    """Create the stateful resources in the emulation; return every resource of the template."""
    resources = Resources()
    stateful = template.of_type(*CLOUDFORMATION_TYPES)
    if stateful:
        _create_stack(template, stateful, endpoint, stack_name, resources)
    _synthesize(template, stack_name, resources)
    resolver = resources.resolver(template, stack_name)
    for logical_id, definition in stateful.items():
        _complete(resources[logical_id], resolver.resolve(definition.get("Properties") or {}), endpoint)
    for logical_id, definition in template.of_type(*API_TYPES).items():
        resources.add(_create_by_api(logical_id, definition, resolver, endpoint))
    return resources


def _create_stack(
    template: Template, stateful: dict[str, Any], endpoint: str | None, stack_name: str, resources: Resources
) -> None:
    body: dict[str, Any] = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": template.translated.get("Parameters") or {},
        "Resources": {k: _without_foreign_dependencies(v, stateful) for k, v in stateful.items()},
    }
    if template.translated.get("Conditions"):
        body["Conditions"] = template.translated["Conditions"]
    cfn = client("cloudformation", endpoint)
    cfn.create_stack(
        StackName=stack_name,
        TemplateBody=json.dumps(body),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in template.parameters.items()],
    )
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    if stack["StackStatus"] != "CREATE_COMPLETE":
        raise RuntimeError(f"stack {stack_name}: {stack['StackStatus']} {stack.get('StackStatusReason', '')}")
    for item in cfn.describe_stack_resources(StackName=stack_name)["StackResources"]:
        logical_id = item["LogicalResourceId"]
        resources.add(
            _with_attributes(
                Resource(logical_id, item["ResourceType"], item["PhysicalResourceId"], created_by="cloudformation"),
                endpoint,
            )
        )
    missing = sorted(set(stateful) - set(resources))
    if missing:
        raise RuntimeError(f"moto's CloudFormation did not create {', '.join(missing)}")


def _without_foreign_dependencies(definition: dict[str, Any], kept: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(definition)
    depends = result.pop("DependsOn", None)
    names = [n for n in ([depends] if isinstance(depends, str) else depends or []) if n in kept]
    return result | ({"DependsOn": names} if names else {})


def _with_attributes(resource: Resource, endpoint: str | None) -> Resource:
    """Ref value and GetAtt attributes of a resource moto created, read back from moto."""
    kind, physical = resource.type, resource.physical_id
    attrs = resource.attributes
    if kind == "AWS::DynamoDB::Table":
        table = client("dynamodb", endpoint).describe_table(TableName=physical)["Table"]
        attrs["Arn"] = table["TableArn"]
        if table.get("LatestStreamArn"):
            attrs["StreamArn"] = table["LatestStreamArn"]
    elif kind == "AWS::SQS::Queue":
        sqs = client("sqs", endpoint)
        name = physical.rstrip("/").rsplit("/", 1)[-1]
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        resource.physical_id = url  # the local URL (moto's CloudFormation reports the AWS-style one)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs.update(Arn=arn, QueueName=name, QueueUrl=url)
    elif kind == "AWS::KMS::Key":
        attrs.update(Arn=f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{physical}", KeyId=physical)
    elif kind == "AWS::KMS::Alias":
        attrs["Arn"] = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{physical}"
    elif kind == "AWS::S3::Bucket":
        attrs.update(
            Arn=f"arn:aws:s3:::{physical}",
            DomainName=f"{physical}.s3.amazonaws.com",
            RegionalDomainName=f"{physical}.s3.{REGION}.amazonaws.com",
        )
    elif kind == "AWS::SNS::Topic":
        attrs.update(TopicArn=physical, TopicName=physical.rsplit(":", 1)[-1], Arn=physical)
    elif kind == "AWS::SecretsManager::Secret":
        attrs["Arn"] = physical
    elif kind == "AWS::Logs::LogGroup":
        attrs["Arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:{physical}:*"
    return resource


def _complete(resource: Resource, props: Mapping[str, Any], endpoint: str | None) -> None:
    """Apply the properties moto's CloudFormation ignores, through the service API."""
    kind, physical = resource.type, resource.physical_id
    if kind == "AWS::DynamoDB::Table":
        ddb = client("dynamodb", endpoint)
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _true(ttl.get("Enabled")):
            ddb.update_time_to_live(
                TableName=physical, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and _true(pitr.get("PointInTimeRecoveryEnabled")):
            ddb.update_continuous_backups(
                TableName=physical, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
    elif kind == "AWS::KMS::Key" and props.get("KeyPolicy"):
        policy = json.dumps(props["KeyPolicy"])
        client("kms", endpoint).put_key_policy(KeyId=physical, PolicyName="default", Policy=policy)
    elif kind == "AWS::S3::Bucket":
        _complete_bucket(physical, props, endpoint)


def _complete_bucket(bucket: str, props: Mapping[str, Any], endpoint: str | None) -> None:
    s3 = client("s3", endpoint)
    lifecycle = props.get("LifecycleConfiguration")
    if lifecycle:
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]}
        )
    block = props.get("PublicAccessBlockConfiguration")
    if block:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration={k: _true(v) for k, v in block.items()}
        )
    ownership = props.get("OwnershipControls")
    if ownership:
        s3.put_bucket_ownership_controls(Bucket=bucket, OwnershipControls={"Rules": ownership["Rules"]})
    versioning = props.get("VersioningConfiguration")
    if versioning:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": versioning["Status"]})


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the S3 API's shape."""
    out: dict[str, Any] = {"Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(days)}
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    return out


def _create_by_api(
    logical_id: str, definition: Mapping[str, Any], resolver: Resolver, endpoint: str | None
) -> Resource:
    props = resolver.resolve(definition.get("Properties") or {})
    kind = definition["Type"]
    if kind == "AWS::S3::BucketPolicy":
        policy = _local_policy(props["PolicyDocument"])
        if policy["Statement"]:
            client("s3", endpoint).put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(policy))
        return Resource(logical_id, kind, props["Bucket"], created_by="service API")
    if kind == "AWS::Scheduler::ScheduleGroup":
        arn = client("scheduler", endpoint).create_schedule_group(Name=props["Name"])["ScheduleGroupArn"]
        return Resource(logical_id, kind, props["Name"], {"Arn": arn}, created_by="service API")
    raise TemplateError(f"{logical_id}: {kind} cannot be created locally")


def _local_policy(document: Mapping[str, Any]) -> dict[str, Any]:
    """The bucket policy as applied locally: without its TLS-only deny, since the local emulation
    speaks plain HTTP on loopback (on AWS the statement stays and every request is TLS)."""

    def tls_only(statement: Mapping[str, Any]) -> bool:
        condition = statement.get("Condition") or {}
        return statement.get("Effect") == "Deny" and "aws:SecureTransport" in json.dumps(condition)

    statements = document.get("Statement") or []
    if isinstance(statements, Mapping):
        statements = [statements]
    return {**document, "Statement": [st for st in statements if not tls_only(st)]}


def _true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# ------------------------------------------------------------------------------- played locally
def _short_id(*parts: str, length: int = 10) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def rest_api_id(stack: str, logical_id: str) -> str:
    """The local id of a REST API (stable for a stack and logical id, like a deployed API's)."""
    return _short_id(stack, logical_id)


_ARN = f"{REGION}:{ACCOUNT_ID}"


def _synthetic(kind: str, logical_id: str, props: Mapping[str, Any], stack: str) -> Resource:
    name = f"{stack}-{logical_id}"
    attributes: dict[str, str]
    physical = name
    if kind == "AWS::Lambda::Function":
        attributes = {"Arn": f"arn:aws:lambda:{_ARN}:function:{name}"}
    elif kind == "AWS::Lambda::LayerVersion":
        layer = props.get("LayerName") if isinstance(props.get("LayerName"), str) else name
        physical = f"arn:aws:lambda:{_ARN}:layer:{layer}:1"
        attributes = {"Arn": physical}
    elif kind == "AWS::IAM::Role":
        attributes = {
            "Arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{name}",
            "RoleId": _short_id(stack, logical_id, length=20),
        }
    elif kind == "AWS::ApiGateway::RestApi":
        physical = rest_api_id(stack, logical_id)
        attributes = {"RestApiId": physical, "RootResourceId": _short_id(stack, logical_id, "/")}
    elif kind == "AWS::Events::Rule":
        attributes = {"Arn": f"arn:aws:events:{_ARN}:rule/{name}"}
    else:
        attributes = {"Arn": f"arn:aws:local:{_ARN}:{logical_id}"}
    return Resource(logical_id, kind, physical, attributes)


def _synthesize(template: Template, stack: str, resources: Resources) -> None:
    for logical_id, definition in template.resources.items():
        if logical_id not in resources and definition["Type"] not in API_TYPES:
            resources.add(_synthetic(definition["Type"], logical_id, definition.get("Properties") or {}, stack))
