"""Functions and their triggers, read from the translated template: `provision` is the one path from
template.yaml to running resources, for the local platform (moto's server) and the tests (moto in-process).

Every `AWS::Lambda::Function` (SAM Globals already merged by the translator) becomes a
`FunctionSpec` with its code directory, handler, timeout, memory and environment (intrinsics
resolved against the local resources, plus what a local run needs). Every
`AWS::Lambda::EventSourceMapping`, scheduled `AWS::Events::Rule` and `AWS::Scheduler::Schedule`
becomes a trigger.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshanics_local import resources as resource_module
from meshanics_local.apigateway import RestApi, read_rest_api
from meshanics_local.awsserver import DUMMY_KEY
from meshanics_local.resources import Resources
from meshanics_local.template import REGION, Resolver, Template, TemplateError
from meshanics_local.workers import FunctionSpec

if TYPE_CHECKING:
    from moto.events.models import EventPattern

log = logging.getLogger("meshanics_local.functions")

# Passed through from the parent so tools and certificates keep working in the workers.
_PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE")


def local_aws_environment(endpoint: str) -> dict[str, str]:
    """What points boto3 (and so the core) at the local emulation."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": DUMMY_KEY,
        "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }


@dataclass
class Wiring:
    """The template's resources and what the local platform plays from them."""

    resources: Resources
    functions: dict[str, FunctionSpec]
    mappings: list[EventSourceMapping]
    schedules: list[Schedule]
    rest_api: RestApi | None


def template_environment(specs: Mapping[str, FunctionSpec]) -> dict[str, str]:
    """The variables the template gives its functions (the union over functions), for code that runs the
    core outside a function worker (the tests, the CLI)."""
    env = {k: v for spec in specs.values() for k, v in spec.declared_environment.items()}
    return env | {"POWERTOOLS_TRACE_DISABLED": "true"}


def provision(
    template: Template, endpoint: str | None, stack_name: str = "meshanics", log_dir: Path | None = None
) -> Wiring:
    """Create the template's resources in the AWS emulation (moto's server at `endpoint`, or moto's mock in
    this process when None) and wire the functions and their triggers to them."""
    resources = resource_module.deploy(template, endpoint, stack_name)
    resolver = resources.resolver(template, stack_name)
    specs = function_specs(template, resources, resolver, endpoint=endpoint, log_dir=log_dir)
    return Wiring(
        resources,
        specs,
        event_source_mappings(template, specs, resolver),
        schedules(template, specs, resources, resolver),
        rest_api(template, specs, resources, resolver),
    )


def function_specs(
    template: Template,
    resources: Resources,
    resolver: Resolver,
    *,
    endpoint: str | None,
    log_dir: Path | None,
) -> dict[str, FunctionSpec]:
    specs: dict[str, FunctionSpec] = {}
    for logical_id, definition in template.of_type("AWS::Lambda::Function").items():
        props = definition.get("Properties") or {}
        code_dir = template.code_path(props.get("Code") or {})
        if code_dir is None:
            raise TemplateError(f"{logical_id}: only local CodeUri directories can run locally")
        layers = tuple(_layer_dir(template, layer) for layer in props.get("Layers") or [])
        name = resources.ref(logical_id)
        memory = int(resolver.resolve(props.get("MemorySize", 128)))
        handler = str(resolver.resolve(props["Handler"]))
        variables = resolver.resolve((props.get("Environment") or {}).get("Variables") or {})
        declared = {k: _env_value(v) for k, v in variables.items()}
        environment = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        environment.update(declared)
        environment.update(local_aws_environment(endpoint) if endpoint else {})
        environment.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "local",
                "LAMBDA_TASK_ROOT": str(code_dir),
                "_HANDLER": handler,
                "TZ": "UTC",
                "POWERTOOLS_TRACE_DISABLED": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=name,
            arn=resources.get_att(logical_id, "Arn"),
            code_dir=code_dir,
            handler=handler,
            timeout=float(resolver.resolve(props.get("Timeout", 3))),
            memory_mb=memory,
            environment=environment,
            layer_dirs=tuple(d for d in layers if d is not None),
            log_path=log_dir / f"{logical_id}.log" if log_dir else None,
            runtime=str(props.get("Runtime", "python3")),
            declared_environment=declared,
        )
    return specs


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _layer_dir(template: Template, layer: Any) -> Path | None:
    if isinstance(layer, dict) and "Ref" in layer:
        definition = template.resources.get(layer["Ref"]) or {}
        return template.code_path((definition.get("Properties") or {}).get("Content") or {})
    return None  # a published layer ARN: its code is not available locally


def function_by_reference(value: Any, specs: Mapping[str, FunctionSpec], resolver: Resolver) -> str:
    """The logical id of the function a FunctionName / target Arn names (Ref, GetAtt, name or ARN)."""
    value = resolver.resolve(value)
    for logical_id, spec in specs.items():
        if value in (spec.name, spec.arn, logical_id) or str(value).startswith(spec.arn + ":"):
            return logical_id
    raise TemplateError(f"{value!r} does not name a function of the template")


# ------------------------------------------------------------------------------- triggers
# FilterCriteria patterns are matched by moto's EventBridge pattern matcher, which has Lambda's rules for
# what filters use (nested keys, arrays, exact values, prefix, suffix, equals-ignore-case, anything-but,
# numeric, exists). The one piece it lacks: it accepts any operator name and lets an unknown one match
# everything, where Lambda refuses the pattern; such patterns are refused here.
FILTER_OPERATORS = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "anything-but", "numeric", "exists", "cidr", "wildcard"}
)


def filter_pattern(text: str) -> EventPattern:
    """One FilterCriteria pattern (JSON text), parsed by moto; TemplateError if Lambda would refuse it."""
    from moto.events.models import EventPattern

    try:
        if not isinstance(json.loads(text), dict):
            raise ValueError("a filter pattern is a JSON object")
        pattern = EventPattern.load(text)
    except Exception as error:
        raise TemplateError(f"invalid filter pattern {text}: {error}") from error
    for operators in _matchers(pattern.get_pattern()):
        if len(operators) != 1 or operators[0] not in FILTER_OPERATORS:
            raise TemplateError(f"invalid filter pattern {text}: unsupported matcher {list(operators)}")
    return pattern


def _matchers(node: Any, matcher: bool = False) -> Iterator[tuple[str, ...]]:
    """The operator names of every matcher object (an object inside an array, or an operator's argument)."""
    if isinstance(node, list):
        for item in node:
            yield from _matchers(item, True)
    elif isinstance(node, dict):
        if matcher:
            yield tuple(node)
        for value in node.values():
            yield from _matchers(value, matcher and isinstance(value, dict))


@dataclass(frozen=True)
class EventSourceMapping:
    logical_id: str
    function: str
    source_arn: str
    kind: str  # "dynamodb" or "sqs" (others are not played locally)
    batch_size: int
    window_seconds: float
    enabled: bool = True
    starting_position: str = "LATEST"
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    max_retry_attempts: int = -1  # -1: until the record expires
    max_record_age_seconds: int = -1
    on_failure_arn: str | None = None
    max_concurrency: int | None = None
    filter_patterns: tuple[EventPattern, ...] = field(default_factory=tuple)

    def passes(self, record: Mapping[str, Any]) -> bool:
        """FilterCriteria: a record goes on when there are no patterns or any one matches it."""
        return not self.filter_patterns or any(p.matches_event(dict(record)) for p in self.filter_patterns)  # type: ignore[arg-type]


def event_source_mappings(
    template: Template, specs: Mapping[str, FunctionSpec], resolver: Resolver
) -> list[EventSourceMapping]:
    mappings: list[EventSourceMapping] = []
    for logical_id, definition in template.of_type("AWS::Lambda::EventSourceMapping").items():
        raw = definition.get("Properties") or {}
        function = function_by_reference(raw["FunctionName"], specs, resolver)
        props = resolver.resolve(raw)
        source = str(props["EventSourceArn"])
        service = source.split(":")[2] if source.count(":") >= 5 else ""
        kind = "dynamodb" if service == "dynamodb" and "/stream/" in source else service
        default_batch = 10 if kind == "sqs" else 100
        patterns = tuple(
            filter_pattern(str(f["Pattern"]))
            for f in (props.get("FilterCriteria") or {}).get("Filters", [])
            if "Pattern" in f
        )
        on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        mappings.append(
            EventSourceMapping(
                logical_id=logical_id,
                function=function,
                source_arn=source,
                kind=kind,
                batch_size=int(props.get("BatchSize", default_batch)),
                window_seconds=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                enabled=str(props.get("Enabled", True)).lower() != "false",
                starting_position=str(props.get("StartingPosition", "LATEST")),
                report_batch_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                bisect_on_error=str(props.get("BisectBatchOnFunctionError", False)).lower() == "true",
                max_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                max_record_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
                on_failure_arn=str(on_failure) if on_failure else None,
                max_concurrency=int((props.get("ScalingConfig") or {}).get("MaximumConcurrency") or 0) or None,
                filter_patterns=patterns,
            )
        )
    return mappings


@dataclass(frozen=True)
class Schedule:
    logical_id: str
    function: str
    rule_arn: str
    expression: str
    enabled: bool
    input: Any = None  # the target's constant Input, when it has one


def schedules(
    template: Template, specs: Mapping[str, FunctionSpec], resources: Resources, resolver: Resolver
) -> list[Schedule]:
    found: list[Schedule] = []
    for logical_id, definition in template.of_type("AWS::Events::Rule").items():
        raw = definition.get("Properties") or {}
        if "ScheduleExpression" not in raw:
            continue
        expression = str(resolver.resolve(raw["ScheduleExpression"]))
        enabled = str(resolver.resolve(raw.get("State", "ENABLED"))) == "ENABLED"
        for target in raw.get("Targets") or []:
            try:
                function = function_by_reference(target["Arn"], specs, resolver)
            except TemplateError:
                continue  # a target the local platform does not play (not a function)
            constant = resolver.resolve(target["Input"]) if "Input" in target else None
            found.append(
                Schedule(logical_id, function, resources.get_att(logical_id, "Arn"), expression, enabled, constant)
            )
    # EventBridge Scheduler schedules (SAM's ScheduleV2): one target each, its Input as the event.
    for logical_id, definition in template.of_type("AWS::Scheduler::Schedule").items():
        raw = definition.get("Properties") or {}
        target = raw.get("Target") or {}
        try:
            function = function_by_reference(target.get("Arn"), specs, resolver)
        except TemplateError:
            continue
        expression = str(resolver.resolve(raw["ScheduleExpression"]))
        enabled = str(resolver.resolve(raw.get("State", "ENABLED"))) == "ENABLED"
        constant = resolver.resolve(target["Input"]) if "Input" in target else None
        found.append(
            Schedule(logical_id, function, resources.get_att(logical_id, "Arn"), expression, enabled, constant)
        )
    return found


def rest_api(
    template: Template, specs: Mapping[str, FunctionSpec], resources: Resources, resolver: Resolver
) -> RestApi | None:
    """The template's REST API (the first, if there are several) with its stage, routes and authorizers."""
    apis = template.of_type("AWS::ApiGateway::RestApi")
    if not apis:
        return None
    if len(apis) > 1:
        log.warning("the template has %d REST APIs; the local front serves %s", len(apis), next(iter(apis)))
    logical_id, definition = next(iter(apis.items()))
    stage = "Prod"
    for stage_definition in template.of_type("AWS::ApiGateway::Stage").values():
        props = stage_definition.get("Properties") or {}
        if props.get("RestApiId") == {"Ref": logical_id}:
            stage = str(resolver.resolve(props.get("StageName", stage)))

    def arn_to_function(arn: str) -> str | None:
        try:
            return function_by_reference(arn, specs, resolver)
        except TemplateError:
            return None

    properties = resolver.resolve(definition.get("Properties") or {})
    return read_rest_api(logical_id, resources.ref(logical_id), stage, properties, arn_to_function)
