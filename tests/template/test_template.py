"""template.yaml: cfn-lint, the SAM translation, a deployment into moto's CloudFormation, and the
rules cfn-lint does not know (timeouts vs visibility, retry bounds, the fan-out mapping, IAM, code)."""

from __future__ import annotations

import ast
import copy
import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from meshanics_local.template import Template, translate

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"

# cfn-lint warnings deliberately accepted, by rule id, each with its reason. None today.
IGNORED_WARNINGS: dict[str, str] = {}

# Resource types moto's CloudFormation cannot create from this template, and why. A change here
# (moto learns one, or the template gains one it lacks) fails the test so the list is revisited.
MOTO_LACKS = {
    "AWS::S3::BucketPolicy": "no CloudFormation model in moto",
    "AWS::ApiGateway::Stage": "no CloudFormation model in moto",
    "AWS::ApiGateway::RestApi": "moto requires Name and ignores the OpenAPI Body SAM generates",
}


@pytest.fixture(scope="module")
def template() -> Template:
    return translate(TEMPLATE)


def resources_of(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return template.of_type(kind)


def sam_functions(template: Template) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template.raw["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def parameter_default(template: Template, name: str) -> str:
    return str(template.raw["Parameters"][name]["Default"])


# ------------------------------------------------------------------------------- lint and translate
def test_cfn_lint_finds_no_errors_or_warnings() -> None:
    from cfnlint.api import ManualArgs, lint_file

    matches = lint_file(TEMPLATE, config=ManualArgs(regions=["us-east-1"]))
    problems = [
        f"{m.rule.id} {m.message} (line {m.linenumber})"
        for m in matches
        if m.rule.id[0] in "EW" and m.rule.id not in IGNORED_WARNINGS
    ]
    assert problems == []


def test_the_sam_translation_succeeds(template: Template) -> None:
    kinds = {r["Type"] for r in template.resources.values()}
    assert not any(k.startswith("AWS::Serverless::") for k in kinds)
    assert len(resources_of(template, "AWS::Lambda::Function")) == len(sam_functions(template))
    for definition in resources_of(template, "AWS::Lambda::Function").values():
        assert template.code_path(definition["Properties"]["Code"]) is not None


# ------------------------------------------------------------------------------- deploy into moto
_REFERENCE = re.compile(r'"Ref": "([A-Za-z0-9]+)"|"Fn::GetAtt": \["([A-Za-z0-9]+)"|\$\{([A-Za-z0-9]+)[.}]')


def _references(value: Any) -> set[str]:
    return {next(g for g in m.groups() if g) for m in _REFERENCE.finditer(json.dumps(value))}


def _moto_lacks(template: Template) -> set[str]:
    """Types with no moto model, and types whose moto model cannot take the template's properties."""
    from moto.cloudformation.parsing import get_model_map

    models = get_model_map()
    kinds = {r["Type"] for r in template.resources.values()}
    lacking = {k for k in kinds if k not in models}
    for logical_id, definition in template.of_type("AWS::ApiGateway::RestApi").items():
        probe = {"Resources": {logical_id: {"Type": definition["Type"], "Properties": {"Body": {"openapi": "3.0.1"}}}}}
        try:
            boto3.client("cloudformation").create_stack(StackName="probe", TemplateBody=json.dumps(probe))
            boto3.client("cloudformation").delete_stack(StackName="probe")
        except Exception:
            lacking.add(definition["Type"])
    return lacking


@pytest.fixture(scope="module")
def deployed(template: Template) -> Iterator[dict[str, Any]]:
    """The translated template in moto's CloudFormation (code replaced with a tiny zip in moto S3)."""
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="code")
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("app.py", "def lambda_handler(event, context):\n    return None\n")
        s3.put_object(Bucket="code", Key="code.zip", Body=archive.getvalue())

        lacking = _moto_lacks(template)
        body = copy.deepcopy(template.translated)
        body.pop("Outputs", None)
        left_out = {
            k
            for k, r in body["Resources"].items()
            # Event source mappings would make moto invoke functions through Docker: checked separately.
            if r["Type"] in lacking or r["Type"] == "AWS::Lambda::EventSourceMapping"
        }
        changed = True
        while changed:  # and whatever refers to what is left out
            dependents = {k for k, r in body["Resources"].items() if k not in left_out and _references(r) & left_out}
            changed = bool(dependents)
            left_out |= dependents
        for logical_id in left_out:
            del body["Resources"][logical_id]
        for definition in body["Resources"].values():
            props = definition.get("Properties", {})
            if definition["Type"] == "AWS::Lambda::Function":
                props["Code"] = {"S3Bucket": "code", "S3Key": "code.zip"}
            if definition["Type"] == "AWS::Lambda::LayerVersion":
                props["Content"] = {"S3Bucket": "code", "S3Key": "code.zip"}
        cfn = boto3.client("cloudformation")
        cfn.create_stack(StackName="meshanics", TemplateBody=json.dumps(body), Capabilities=["CAPABILITY_IAM"])
        stack = cfn.describe_stacks(StackName="meshanics")["Stacks"][0]
        created = {
            r["LogicalResourceId"]: r for r in cfn.describe_stack_resources(StackName="meshanics")["StackResources"]
        }
        yield {"lacking": lacking, "left_out": left_out, "body": body, "stack": stack, "created": created}


def test_the_types_moto_lacks_are_the_known_ones(deployed: dict[str, Any]) -> None:
    assert deployed["lacking"] == set(MOTO_LACKS)


def test_everything_else_is_created(template: Template, deployed: dict[str, Any]) -> None:
    assert deployed["stack"]["StackStatus"] == "CREATE_COMPLETE"
    created = deployed["created"]
    assert set(created) == set(deployed["body"]["Resources"])
    assert {r["ResourceStatus"] for r in created.values()} == {"CREATE_COMPLETE"}
    # Left out: only the lacking types, the mappings, and what refers to the REST API.
    for logical_id in deployed["left_out"]:
        kind = template.resources[logical_id]["Type"]
        assert (
            kind in MOTO_LACKS
            or kind in ("AWS::Lambda::EventSourceMapping", "AWS::ApiGateway::Deployment")
            or (
                kind == "AWS::Lambda::Permission"
                and template.resources[logical_id]["Properties"]["Principal"] == "apigateway.amazonaws.com"
            )
        ), logical_id


def test_real_objects_exist(deployed: dict[str, Any]) -> None:
    created = deployed["created"]
    ddb = boto3.client("dynamodb")
    audit = ddb.describe_table(TableName=created["AuditLogTable"]["PhysicalResourceId"])["Table"]
    assert audit["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    integrations = ddb.describe_table(TableName=created["IntegrationsTable"]["PhysicalResourceId"])["Table"]
    assert [g["IndexName"] for g in integrations["GlobalSecondaryIndexes"]] == ["unsent"]
    sqs = boto3.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=created["DeliveryQueue"]["PhysicalResourceId"], AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(
        QueueUrl=created["DeliveryDeadLetterQueue"]["PhysicalResourceId"], AttributeNames=["QueueArn"]
    )
    redrive = json.loads(queue["Attributes"]["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dlq["Attributes"]["QueueArn"], "maxReceiveCount": 8}
    kms = boto3.client("kms")
    key_id = created["SealingKey"]["PhysicalResourceId"]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/meshanics-sealing-dev"] == key_id
    functions = {f["FunctionName"]: f for f in boto3.client("lambda").list_functions()["Functions"]}
    fanout = functions[created["FanoutFunction"]["PhysicalResourceId"]]
    assert fanout["Environment"]["Variables"]["AUDIT_TABLE"] == audit["TableName"]
    assert fanout["Timeout"] == 60 and fanout["Runtime"] == "python3.14"  # moto drops Architectures
    rule = boto3.client("events").describe_rule(Name=created["ReplayFunctionSweep"]["PhysicalResourceId"])
    assert rule["ScheduleExpression"] == "rate(15 minutes)"


def test_left_out_wiring_is_consistent(template: Template) -> None:
    """What moto cannot hold, checked from the translated template itself."""
    functions = set(resources_of(template, "AWS::Lambda::Function"))
    for definition in resources_of(template, "AWS::Lambda::EventSourceMapping").values():
        assert definition["Properties"]["FunctionName"]["Ref"] in functions
    for definition in resources_of(template, "AWS::Lambda::Permission").values():
        target = definition["Properties"]["FunctionName"]
        assert (target.get("Ref") or target["Fn::GetAtt"][0]) in functions
    [stage] = resources_of(template, "AWS::ApiGateway::Stage").values()
    assert stage["Properties"]["StageName"] == {"Ref": "Environment"}


# ------------------------------------------------------------------------------- rules cfn-lint does not check
def _queue_of(arn: Any) -> str:
    return str(arn["Fn::GetAtt"][0])


def test_queues_outlast_six_times_their_consumers_timeout(template: Template) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    consumed = 0
    for definition in resources_of(template, "AWS::Lambda::EventSourceMapping").values():
        props = definition["Properties"]
        source = props["EventSourceArn"]
        if "Fn::GetAtt" not in source or _queue_of(source) not in queues:
            continue
        function = template.resources[props["FunctionName"]["Ref"]]["Properties"]
        visibility = int(queues[_queue_of(source)]["Properties"].get("VisibilityTimeout", 30))
        assert visibility >= 6 * int(function["Timeout"]), _queue_of(source)
        consumed += 1
    assert consumed >= 1


def test_delivery_attempts_agree(template: Template) -> None:
    redrive = template.raw["Resources"]["DeliveryQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "DeliveryMaxAttempts"}
    attempts = int(parameter_default(template, "DeliveryMaxAttempts"))
    schedule = parameter_default(template, "DeliveryRetrySchedule").split(",")
    assert attempts == len(schedule)
    assert all(int(delay) <= 43200 for delay in schedule)


def test_the_fanout_stream_mapping(template: Template) -> None:
    [props] = [
        d["Properties"]
        for d in resources_of(template, "AWS::Lambda::EventSourceMapping").values()
        if d["Properties"]["FunctionName"] == {"Ref": "FanoutFunction"}
    ]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["AuditLogTable", "StreamArn"]}
    assert [json.loads(f["Pattern"]) for f in props["FilterCriteria"]["Filters"]] == [{"eventName": ["INSERT"]}]
    assert "ReportBatchItemFailures" in props["FunctionResponseTypes"]
    assert props["BisectBatchOnFunctionError"] is True
    assert props["ParallelizationFactor"] == 1  # fan-out creates each delivery record once per shard
    assert 0 <= int(props["MaximumRetryAttempts"]) <= 100
    assert int(props["MaximumRecordAgeInSeconds"]) > 0
    destination = props["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}


def test_functions_run_python_314_on_arm64(template: Template) -> None:
    for logical_id, definition in resources_of(template, "AWS::Lambda::Function").items():
        props = definition["Properties"]
        assert props["Runtime"] == "python3.14", logical_id
        assert props["Architectures"] == ["arm64"], logical_id


def test_no_function_policy_grants_everything(template: Template) -> None:
    for logical_id, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            statements = policy["PolicyDocument"]["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                actions = statement.get("Action", [])
                actions = actions if isinstance(actions, list) else [actions]
                resources = statement.get("Resource", [])
                resources = resources if isinstance(resources, list) else [resources]
                assert "*" not in actions, f"{logical_id}: Action *"
                wildcard_action = any("*" in str(a) for a in actions)
                assert not (wildcard_action and "*" in resources), f"{logical_id}: {actions} on Resource *"


def test_every_function_has_its_handler(template: Template) -> None:
    for logical_id, definition in sam_functions(template).items():
        props = definition["Properties"]
        module, _, name = props["Handler"].rpartition(".")
        source = ROOT / props["CodeUri"] / f"{module}.py"
        assert source.is_file(), f"{logical_id}: {source} is missing"
        tree = ast.parse(source.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        assert name in defined, f"{logical_id}: {source} defines no {name}"


def test_every_function_has_a_sample_event(template: Template) -> None:
    samples = {p.name for p in EVENTS.glob("*.json")}
    for logical_id, definition in sam_functions(template).items():
        prefix = Path(definition["Properties"]["CodeUri"]).name + "-"
        assert any(s.startswith(prefix) for s in samples), f"{logical_id}: no events/{prefix}*.json"
