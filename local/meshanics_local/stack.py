"""LocalPlatform: the whole system on one machine, wired from template.yaml.

    with LocalPlatform(api_port=0, aws_port=0, state_dir=tmp) as stack:
        requests.get(f"{stack.api_url}/v1/webhooks", headers={"Authorization": f"Bearer {stack.demo_key}"})

Start order: the AWS emulation (moto server) and the template translation run side by side; then
the stateful resources are created from the translated template, the function workers spawn (they
import their handlers in the background), the demo API key is created, and the pollers, schedules
and API front start. Everything runs in this process (threads) and in child processes (moto and
the function workers); nothing touches `os.environ`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from meshanics_local.apigateway import ApiFront, RestApi
from meshanics_local.awsserver import AwsServer, client
from meshanics_local.functions import (
    EventSourceMapping,
    Schedule,
    local_aws_environment,
    provision,
    template_environment,
)
from meshanics_local.resources import Resources
from meshanics_local.template import REGION, Template, TemplateError, translate
from meshanics_local.triggers import Loop, OneTimeSchedules, QueuePoller, ScheduleRunner, StreamPoller
from meshanics_local.workers import FunctionPool, FunctionSpec, Invocation

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_API_PORT = 3000
DEFAULT_AWS_PORT = 5000
DEMO_TENANT = "demo"
RECENT_EVENTS = 20

log = logging.getLogger("meshanics_local")


@dataclass
class FunctionUsage:
    """One function's invocations and AWS requests, summed (what Lambda and AWS would bill)."""

    invocations: int = 0
    errors: int = 0
    billed_ms: int = 0  # Lambda bills each invocation's duration rounded up to the millisecond
    requests: Counter[str] = field(default_factory=Counter)
    dynamodb_writes: int = 0
    dynamodb_reads: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def add(self, invocation: Invocation) -> None:
        self.invocations += 1
        self.errors += 0 if invocation.ok else 1
        self.billed_ms += math.ceil(invocation.duration_ms)
        self.requests.update(invocation.aws.get("requests", {}))
        self.dynamodb_writes += int(invocation.aws.get("dynamodb_writes", 0))
        self.dynamodb_reads += int(invocation.aws.get("dynamodb_reads", 0))
        self.faults.update(invocation.aws.get("faults", {}))


class LocalPlatform:
    def __init__(
        self,
        *,
        api_port: int = DEFAULT_API_PORT,
        aws_port: int = DEFAULT_AWS_PORT,
        template: Path | None = None,
        state_dir: Path | None = None,
        parameter_overrides: Mapping[str, str] | None = None,
        pool_sizes: Mapping[str, int] | None = None,
        schedule_scale: float = 1.0,
        stack_name: str = "meshanics",
        demo_key: bool = True,
        run_functions: bool = True,
        function_environment: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.template_path = (template or REPO_ROOT / "template.yaml").resolve()
        self.state_dir = (state_dir or REPO_ROOT / ".local").resolve()
        self.log_dir = self.state_dir / "logs"
        self.region = REGION
        self.stack_name = stack_name
        self._api_port = api_port
        self._aws_port = aws_port
        self._overrides = dict(parameter_overrides or {})
        self._pool_sizes = dict(pool_sizes or {})
        self._schedule_scale = schedule_scale
        self._want_demo_key = demo_key
        # False: only the AWS emulation and the resources (benchmarks call handlers themselves).
        self._run_functions = run_functions
        # Extra variables per function (logical id, or "*" for all), e.g. a fault plan for chaos runs.
        self._function_environment = {k: dict(v) for k, v in (function_environment or {}).items()}

        self.template: Template | None = None
        self.resources: Resources = Resources()
        self.functions: dict[str, FunctionSpec] = {}
        self.pools: dict[str, FunctionPool] = {}
        self.mappings: list[EventSourceMapping] = []
        self.schedules: list[Schedule] = []
        self.rest_api: RestApi | None = None
        self.demo_key: str | None = None
        self._aws: AwsServer | None = None
        self._front: ApiFront | None = None
        self._triggers: list[Loop] = []  # the stream and queue pollers and the schedules, started in this order
        self._log_handler: logging.Handler | None = None
        # The last events each function received from the local triggers (for inspection and tests).
        self.recent_events: dict[str, deque[Any]] = {}
        # What each function did and asked of AWS, summed over its invocations (see FunctionUsage).
        self.usage: dict[str, FunctionUsage] = {}
        self._usage_lock = threading.Lock()

    # -- addresses --------------------------------------------------------------------------------
    @property
    def aws_url(self) -> str:
        assert self._aws is not None, "start() the stack first"
        return self._aws.url

    @property
    def api_url(self) -> str | None:
        return self._front.url if self._front else None

    @property
    def stack_file(self) -> Path:
        return self.state_dir / "stack.json"

    @property
    def demo_key_file(self) -> Path:
        return self.state_dir / "demo-key"

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> LocalPlatform:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalPlatform:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._start_logging()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        self._aws = AwsServer(self._aws_port, self.log_dir / "aws.log")
        self._aws.launch()
        self.template = template = translate(self.template_path, self._overrides)
        endpoint = self._aws.wait_ready()
        wiring = provision(template, endpoint, self.stack_name, self.log_dir)
        self.resources, self.mappings, self.schedules = wiring.resources, wiring.mappings, wiring.schedules
        self.rest_api = wiring.rest_api
        self.functions = {
            logical_id: replace(spec, environment={**spec.environment, **self._extra_environment(logical_id)})
            for logical_id, spec in wiring.functions.items()
        }
        if self._want_demo_key:
            self.demo_key = self._create_demo_key()
        if not self._run_functions:
            self._write_state()
            return
        for logical_id, spec in self.functions.items():
            pool = FunctionPool(spec, self._pool_size(logical_id))
            pool.start()
            self.pools[logical_id] = pool
        self._start_triggers()
        if self.rest_api is not None:
            self._front = ApiFront(
                self.rest_api,
                self.invoke,
                port=self._api_port,
                region=self.region,
                function_timeouts={k: s.timeout for k, s in self.functions.items()},
            )
            self._front.start()
        self._write_state()
        log.info("local platform up in %.1fs", time.monotonic() - started)

    def stop(self) -> None:
        for running in [*reversed(self._triggers), self._front]:
            with contextlib.suppress(Exception):
                if running is not None:
                    running.stop()
        for pool in self.pools.values():
            pool.request_stop()
        deadline = time.monotonic() + 1  # idle workers exit at once; a busy or initializing one is killed
        for pool in self.pools.values():
            with contextlib.suppress(Exception):
                pool.finish(deadline)
        if self._aws is not None:
            self._aws.stop()
        self._triggers = []
        self.pools = {}
        if self._log_handler is not None:
            log.removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None

    def _start_logging(self) -> None:
        handler = logging.FileHandler(self.log_dir / "local-stack.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        self._log_handler = handler

    # -- wiring -----------------------------------------------------------------------------------
    def _extra_environment(self, logical_id: str) -> dict[str, str]:
        return {**self._function_environment.get("*", {}), **self._function_environment.get(logical_id, {})}

    def _pool_size(self, logical_id: str) -> int:
        if logical_id in self._pool_sizes:
            return max(1, int(self._pool_sizes[logical_id]))
        if "*" in self._pool_sizes:
            return max(1, int(self._pool_sizes["*"]))
        api_backed = self.rest_api is not None and any(
            route.function == logical_id for methods in self.rest_api.routes.values() for route in methods.values()
        )
        queue_backed = any(m.function == logical_id and m.kind == "sqs" for m in self.mappings)
        return 2 if api_backed or queue_backed else 1

    def _start_triggers(self) -> None:
        endpoint = self.aws_url
        for mapping in self.mappings:
            if not mapping.enabled:
                continue
            spec = self.functions[mapping.function]
            invoke = functools.partial(self.invoke, mapping.function)
            if mapping.kind == "dynamodb":
                poller = StreamPoller(mapping, invoke, endpoint=endpoint, region=self.region, function_arn=spec.arn)
                poller.start()
                self._triggers.append(poller)
            elif mapping.kind == "sqs":
                pool = self.pools[mapping.function].size
                concurrency = min(mapping.max_concurrency or pool, pool)
                queue = QueuePoller(mapping, invoke, endpoint=endpoint, region=self.region, concurrency=concurrency)
                queue.start()
                self._triggers.append(queue)
            else:
                log.warning("%s: %s event sources are not played locally", mapping.logical_id, mapping.kind)
        groups = [r.physical_id for r in self.resources.values() if r.type == "AWS::Scheduler::ScheduleGroup"]
        if groups:
            one_time = OneTimeSchedules(groups, self.invoke, endpoint=endpoint)
            one_time.start()
            self._triggers.append(one_time)
        for schedule in self.schedules:
            runner = ScheduleRunner(
                schedule,
                functools.partial(self.invoke, schedule.function),
                region=self.region,
                scale=self._schedule_scale,
            )
            runner.start()
            self._triggers.append(runner)

    def invoke(self, function: str, event: Any, timeout: float | None = None) -> Invocation:
        """Invoke a function (by logical id or function name), as its triggers, the API front or
        `sam local invoke` do; the event is remembered and the invocation counted."""
        logical_id = function if function in self.pools else self._logical_id(function)
        self.recent_events.setdefault(logical_id, deque(maxlen=RECENT_EVENTS)).append(event)
        invocation = self.pools[logical_id].invoke(event, timeout=timeout)
        with self._usage_lock:
            self.usage.setdefault(logical_id, FunctionUsage()).add(invocation)
        return invocation

    def take_usage(self) -> dict[str, FunctionUsage]:
        """The usage since the last take, per function (and start counting afresh)."""
        with self._usage_lock:
            taken, self.usage = self.usage, {}
        return taken

    @property
    def stream_pollers(self) -> list[StreamPoller]:
        return [t for t in self._triggers if isinstance(t, StreamPoller)]

    def _logical_id(self, name: str) -> str:
        for logical_id, spec in self.functions.items():
            if name in (spec.name, spec.arn):
                return logical_id
        raise KeyError(f"no function {name!r} in the template")

    # -- helpers for callers ----------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """A boto3 client pointed at the local AWS emulation."""
        return client(service, self.aws_url)

    def environment(self, function: str | None = None) -> dict[str, str]:
        """A function's environment (default: the first function's, which carries the Globals)."""
        if function is None:
            spec = next(iter(self.functions.values()))
        else:
            spec = self.functions[function if function in self.functions else self._logical_id(function)]
        return dict(spec.environment)

    def physical(self, logical_id: str) -> str:
        return self.resources.ref(logical_id)

    def _create_demo_key(self) -> str:
        from meshanics.apikeys import SCOPES
        from meshanics.store.apikeys import ApiKeyStore

        table = template_environment(self.functions).get("INTEGRATIONS_TABLE")
        if table is None:
            raise TemplateError("no function has INTEGRATIONS_TABLE set; cannot create the demo API key")
        dynamodb = self.client("dynamodb")
        key: str = ApiKeyStore(lambda: dynamodb, table).create(DEMO_TENANT, SCOPES, name="local demo key")[0]
        return key

    # -- state ------------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """What runs where (written to stack.json and printed on start)."""
        triggers: dict[str, list[str]] = {k: [] for k in self.functions}
        for mapping in self.mappings:
            source = self.resources.by_arn(mapping.source_arn.split("/stream/")[0])
            name = source.logical_id if source else mapping.source_arn
            triggers[mapping.function].append(f"{mapping.kind} {name} (batch {mapping.batch_size})")
        for schedule in self.schedules:
            scale = f" / {self._schedule_scale:g}" if self._schedule_scale != 1 else ""
            triggers[schedule.function].append(f"schedule {schedule.expression}{scale}")
        if self.rest_api is not None:
            for methods in self.rest_api.routes.values():
                for route in methods.values():
                    if route.function in triggers:
                        triggers[route.function].append(f"api {route.method} {route.resource_path}")
            for authorizer in self.rest_api.authorizers.values():
                triggers[authorizer.function].append(f"authorizer {authorizer.name} ({authorizer.kind})")
        return {
            "stack_name": self.stack_name,
            "region": self.region,
            "aws_endpoint": self.aws_url,
            "api_url": self.api_url,
            "api_stage": self.rest_api.stage if self.rest_api else None,
            "template": str(self.template_path),
            "parameters": dict(self.template.parameters) if self.template else {},
            "log_dir": str(self.log_dir),
            "demo_key_file": str(self.demo_key_file) if self.demo_key else None,
            "demo_tenant": DEMO_TENANT if self.demo_key else None,
            "resources": self.resources.describe(),
            # What points a process (the meshanics CLI, scripts) at this stack, as the functions see it.
            "environment": self.parent_environment() if self._aws else {},
            "functions": {
                logical_id: {
                    "name": spec.name,
                    "arn": spec.arn,
                    "handler": spec.handler,
                    "code_dir": str(spec.code_dir),
                    "code_present": spec.code_present,
                    "timeout": spec.timeout,
                    "memory_mb": spec.memory_mb,
                    "workers": self.pools[logical_id].size if logical_id in self.pools else 0,
                    "log": str(spec.log_path),
                    "triggers": triggers[logical_id],
                }
                for logical_id, spec in self.functions.items()
            },
        }

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.stack_file.write_text(json.dumps(self.describe(), indent=2) + "\n", encoding="utf-8")
        if self.demo_key:
            self.demo_key_file.write_text(self.demo_key + "\n", encoding="utf-8")
            with contextlib.suppress(OSError):
                os.chmod(self.demo_key_file, 0o600)

    def parent_environment(self) -> dict[str, str]:
        """Variables that point a process (boto3, the core, the CLI) at this stack: the template's
        function variables (the union over functions) and the local AWS endpoint and credentials."""
        return template_environment(self.functions) | local_aws_environment(self.aws_url)
