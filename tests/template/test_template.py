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
    "AWS::CloudWatch::Alarm": "no CloudFormation model in moto",
    "AWS::SNS::Subscription": "no CloudFormation model in moto",
    "AWS::SNS::TopicPolicy": "no CloudFormation model in moto",
    "AWS::Scheduler::Schedule": "no CloudFormation model in moto",
    "AWS::Scheduler::ScheduleGroup": "no CloudFormation model in moto",
}

# Queues that hold work nothing else will redo: each needs an alarm on its depth (or its oldest message).
ALARMED_QUEUES = (
    "DeliveryDeadLetterQueue",
    "FanoutFailureQueue",
    "FanoutUnrecoverableQueue",
    "ReplayDeadLetterQueue",
    "SweepDeadLetterQueue",
)


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
    assert [g["IndexName"] for g in integrations["GlobalSecondaryIndexes"]] == ["failed"]
    sqs = boto3.client("sqs")
    queue = sqs.get_queue_attributes(QueueUrl=created["DeliveryQueue"]["PhysicalResourceId"], AttributeNames=["All"])
    dlq = sqs.get_queue_attributes(
        QueueUrl=created["DeliveryDeadLetterQueue"]["PhysicalResourceId"], AttributeNames=["QueueArn"]
    )
    redrive = json.loads(queue["Attributes"]["RedrivePolicy"])
    assert redrive == {"deadLetterTargetArn": dlq["Attributes"]["QueueArn"], "maxReceiveCount": 20}
    kms = boto3.client("kms")
    key_id = created["SealingKey"]["PhysicalResourceId"]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases["alias/meshanics-sealing-dev"] == key_id
    functions = {f["FunctionName"]: f for f in boto3.client("lambda").list_functions()["Functions"]}
    fanout = functions[created["FanoutFunction"]["PhysicalResourceId"]]
    assert fanout["Environment"]["Variables"]["AUDIT_TABLE"] == audit["TableName"]
    assert fanout["Timeout"] == 60 and fanout["Runtime"] == "python3.14"  # moto drops Architectures
    failures = sqs.get_queue_attributes(
        QueueUrl=created["FanoutFailureQueue"]["PhysicalResourceId"], AttributeNames=["RedrivePolicy"]
    )
    unrecoverable = sqs.get_queue_attributes(
        QueueUrl=created["FanoutUnrecoverableQueue"]["PhysicalResourceId"], AttributeNames=["QueueArn"]
    )
    assert json.loads(failures["Attributes"]["RedrivePolicy"]) == {
        "deadLetterTargetArn": unrecoverable["Attributes"]["QueueArn"],
        "maxReceiveCount": 5,
    }
    topic = boto3.client("sns").get_topic_attributes(TopicArn=created["AlarmTopic"]["PhysicalResourceId"])
    assert topic["Attributes"]["KmsMasterKeyId"].endswith(created["AlarmTopicKey"]["PhysicalResourceId"])


def test_the_sweep_is_an_eventbridge_scheduler_schedule_with_retries_and_a_dead_letter_queue(
    template: Template,
) -> None:
    [sweep] = resources_of(template, "AWS::Scheduler::Schedule").values()
    props = sweep["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "ReplaySchedule"} and props["State"] == "ENABLED"
    assert parameter_default(template, "ReplaySchedule") == "rate(15 minutes)"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": ["ReplayFunction", "Arn"]}
    assert json.loads(target["Input"]) == {"task": "sweep"}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 3, "MaximumEventAgeInSeconds": 600}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["SweepDeadLetterQueue", "Arn"]}}
    # Scheduled recoveries: their group, and the role they send the replay queue's messages as.
    [group] = resources_of(template, "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == {"Fn::Sub": "meshanics-replays-${Environment}"}
    role = template.resources["ReplaySchedulerRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    [policy] = role["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": {"Fn::GetAtt": ["ReplayQueue", "Arn"]}}
    ]


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
    """The attempt bound is the schedule's length, counted in the record; the queue's maxReceiveCount
    is a crash backstop above it."""
    redrive = template.raw["Resources"]["DeliveryQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "DeliveryMaxReceives"}
    attempts = int(parameter_default(template, "DeliveryMaxAttempts"))
    schedule = parameter_default(template, "DeliveryRetrySchedule").split(",")
    assert attempts == len(schedule)
    assert int(parameter_default(template, "DeliveryMaxReceives")) > attempts
    assert all(int(delay) <= 43200 for delay in schedule)


def test_the_attempt_deadline_fits_the_delivery_function(template: Template) -> None:
    """An attempt's whole-request deadline plus the batch margin fits the function's timeout."""
    from meshanics.deliver import BATCH_MARGIN_SECONDS

    deliver = template.raw["Resources"]["DeliverFunction"]["Properties"]
    timeout = int(deliver.get("Timeout", template.raw["Globals"]["Function"]["Timeout"]))
    maximum = int(template.raw["Parameters"]["DeliveryDeadlineMs"]["MaxValue"]) / 1000
    assert maximum + BATCH_MARGIN_SECONDS < timeout


def test_fanout_recovery_knows_its_queues_receive_bound(template: Template) -> None:
    recovery = template.raw["Resources"]["FanoutRecoveryFunction"]["Properties"]
    failures = template.raw["Resources"]["FanoutFailureQueue"]["Properties"]
    assert recovery["Environment"]["Variables"]["FANOUT_RECOVERY_MAX_RECEIVES"] == str(
        failures["RedrivePolicy"]["maxReceiveCount"]
    )
    [mapping] = recovery["Events"].values()
    assert mapping["Properties"]["Queue"] == {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}
    # A discarded batch must still be in the stream (24 h) when recovery reads it.
    [fanout] = template.raw["Resources"]["FanoutFunction"]["Properties"]["Events"].values()
    assert fanout["Properties"]["MaximumRecordAgeInSeconds"] <= 12 * 3600


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
    # Fan-out only sends jobs (no reads, no writes): batches of a shard may run side by side, Lambda
    # keeping each partition key (a tenant's audit shard) in order.
    assert 1 <= props["ParallelizationFactor"] <= 10
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


# ------------------------------------------------------------------------------- alarms
def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources_of(template, "AWS::CloudWatch::Alarm").items()}


def _metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """The metrics an alarm reads: {namespace, name, dimensions, stat, period}, also inside metric math."""
    if "MetricName" in alarm:
        return [
            {
                "namespace": alarm["Namespace"],
                "name": alarm["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                "stat": alarm["Statistic"],
                "period": int(alarm["Period"]),
            }
        ]
    found = []
    for query in alarm["Metrics"]:
        if "MetricStat" in query:
            stat, metric = query["MetricStat"], query["MetricStat"]["Metric"]
            found.append(
                {
                    "namespace": metric["Namespace"],
                    "name": metric["MetricName"],
                    "dimensions": {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])},
                    "stat": stat["Stat"],
                    "period": int(stat["Period"]),
                }
            )
    return found


def _alarms_on(template: Template, namespace: str, names: set[str], dimension: str, value: Any) -> list[str]:
    return [
        logical_id
        for logical_id, alarm in _alarms(template).items()
        if any(
            m["namespace"] == namespace and m["name"] in names and m["dimensions"].get(dimension) == value
            for m in _metrics(alarm)
        )
    ]


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_has_an_errors_and_a_throttles_alarm(template: Template, metric: str) -> None:
    for function in sam_functions(template):
        alarms = _alarms_on(template, "AWS/Lambda", {metric}, "FunctionName", {"Ref": function})
        assert alarms, f"{function}: no {metric} alarm"
        for logical_id in alarms:
            alarm = _alarms(template)[logical_id]
            [lambda_metric] = [m for m in _metrics(alarm) if m["namespace"] == "AWS/Lambda"]
            assert (lambda_metric["stat"], lambda_metric["period"]) == ("Sum", 300), logical_id
            assert float(alarm["Threshold"]) == 1, logical_id
            assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", logical_id


def test_every_queue_of_unfinished_work_has_a_depth_alarm(template: Template) -> None:
    queues = resources_of(template, "AWS::SQS::Queue")
    dead_letter_targets = {
        _queue_of(q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"])
        for q in queues.values()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    on_failure = {
        _queue_of(m["Properties"]["DestinationConfig"]["OnFailure"]["Destination"])
        for m in resources_of(template, "AWS::Lambda::EventSourceMapping").values()
        if "DestinationConfig" in m["Properties"]
    }
    assert set(ALARMED_QUEUES) <= set(queues)
    assert dead_letter_targets | on_failure <= set(ALARMED_QUEUES)  # a new such queue is added to the list
    depth = {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"}
    for queue in ALARMED_QUEUES:
        alarms = _alarms_on(template, "AWS/SQS", depth, "QueueName", {"Fn::GetAtt": [queue, "QueueName"]})
        assert alarms, f"{queue}: no depth alarm"
    for queue in dead_letter_targets:  # nothing leaves a dead-letter queue by itself: one message alarms
        alarms = _alarms_on(
            template,
            "AWS/SQS",
            {"ApproximateNumberOfMessagesVisible"},
            "QueueName",
            {"Fn::GetAtt": [queue, "QueueName"]},
        )
        assert any(float(_alarms(template)[a]["Threshold"]) == 1 for a in alarms), queue


def test_the_stream_iterator_age_is_alarmed(template: Template) -> None:
    [logical_id] = _alarms_on(template, "AWS/Lambda", {"IteratorAge"}, "FunctionName", {"Ref": "FanoutFunction"})
    alarm = _alarms(template)[logical_id]
    assert alarm["Threshold"] == {"Ref": "IteratorAgeAlarmSeconds"}
    [returned] = [q for q in alarm["Metrics"] if q.get("ReturnData", True)]
    assert returned["Expression"].replace(" ", "").endswith("/1000")  # IteratorAge is in milliseconds
    assert int(parameter_default(template, "IteratorAgeAlarmSeconds")) == 300


def test_every_alarm_notifies_the_topic(template: Template) -> None:
    alarms = _alarms(template)
    assert len(alarms) >= 2 * len(sam_functions(template)) + len(ALARMED_QUEUES) + 1
    for logical_id, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert alarm["TreatMissingData"] == "notBreaching", logical_id
        description = alarm["AlarmDescription"]
        text = description if isinstance(description, str) else description["Fn::Sub"]
        assert "What to do" in text and len(text) <= 1024, logical_id


def test_the_alarm_topic(template: Template) -> None:
    resources = template.resources
    topic = resources["AlarmTopic"]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": ["AlarmTopicKey", "Arn"]}
    key = resources["AlarmTopicKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch_uses_key = [
        s for s in key["KeyPolicy"]["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cloudwatch_uses_key[0]["Action"])
    [policy] = resources_of(template, "AWS::SNS::TopicPolicy").values()
    assert policy["Properties"]["Topics"] == [{"Ref": "AlarmTopic"}]
    [publish] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    [subscription] = resources_of(template, "AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert parameter_default(template, "AlarmEmail") == ""
    assert template.raw["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": "AlarmTopic"}


def test_the_alarm_email_is_optional() -> None:
    without = translate(TEMPLATE)
    with_email = translate(TEMPLATE, {"AlarmEmail": "oncall@example.com"})
    from meshanics_local.template import evaluate_conditions

    assert evaluate_conditions(without.translated, without.parameters)["HasAlarmEmail"] is False
    assert evaluate_conditions(with_email.translated, with_email.parameters)["HasAlarmEmail"] is True


# ------------------------------------------------------------------------------- encryption at rest
def test_every_table_queue_topic_and_bucket_states_its_encryption(template: Template) -> None:
    sealing_key = {"Fn::GetAtt": ["SealingKey", "Arn"]}
    checked = 0
    for logical_id, definition in template.resources.items():
        props = definition.get("Properties", {})
        kind = definition["Type"]
        if kind == "AWS::DynamoDB::Table":
            sse = props["SSESpecification"]
            assert sse["SSEEnabled"] is True and sse["SSEType"] == "KMS", logical_id
            assert sse.get("KMSMasterKeyId") not in (sealing_key, {"Ref": "SealingKey"}), logical_id
        elif kind == "AWS::SQS::Queue":
            managed, kms = props.get("SqsManagedSseEnabled") is True, "KmsMasterKeyId" in props
            assert managed != kms, f"{logical_id}: state SqsManagedSseEnabled: true or a KmsMasterKeyId"
        elif kind == "AWS::SNS::Topic":
            assert props.get("KmsMasterKeyId") not in (None, sealing_key, {"Ref": "SealingKey"}), logical_id
        elif kind == "AWS::S3::Bucket":
            rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            algorithms = {r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules}
            assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}, logical_id
        else:
            continue
        checked += 1
    assert checked >= 8


def test_every_skipped_checkov_check_says_why(template: Template) -> None:
    skipped = 0
    for logical_id, definition in template.raw["Resources"].items():
        for skip in definition.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), logical_id
            assert len(skip.get("comment", "")) >= 40, f"{logical_id}: {skip['id']} without a reason"
            skipped += 1
    assert skipped > 0


# ------------------------------------------------------------------------------- least privilege
def _statements(template: Template, function: str) -> list[dict[str, Any]]:
    policies = template.raw["Resources"][function]["Properties"]["Policies"]
    return [s for policy in policies for s in policy["Statement"]]


def _actions(template: Template, function: str, resource: Any) -> set[str]:
    found: set[str] = set()
    for statement in _statements(template, function):
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if resource in resources:
            actions = statement["Action"]
            found |= set(actions if isinstance(actions, list) else [actions])
    return found


def test_registry_connections_are_managed_by_the_api_function(template: Template) -> None:
    """The API function serves /v1/registries (sealing credentials); the registry function serves
    only /v2 and may unseal credentials but not seal new ones."""
    events = {
        name: {e["Properties"]["Path"] for e in template.raw["Resources"][name]["Properties"]["Events"].values()}
        for name in ("ApiFunction", "RegistryFunction")
    }
    assert {"/v1/registries", "/v1/registries/{id}/approve"} <= events["ApiFunction"]
    assert events["RegistryFunction"] == {"/v2", "/v2/{proxy+}"}
    key = {"Fn::GetAtt": ["SealingKey", "Arn"]}
    assert _actions(template, "ApiFunction", key) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert _actions(template, "RegistryFunction", key) == {"kms:Decrypt"}
    bucket = {"Fn::Sub": "${ArtifactCacheBucket.Arn}/tenants/*"}
    assert "s3:GetObject" in _actions(template, "RegistryFunction", bucket)
    assert _actions(template, "ApiFunction", bucket) == set()  # the artifact cache is the pull side's
