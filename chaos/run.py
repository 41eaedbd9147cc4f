"""The chaos run: every fault at once, through the local platform, and an account of every delivery.

Three tenants each subscribe one endpoint per receiver profile (see receivers.PROFILES: steady,
flaky, throttled, hanging, dripping, resetting, redirecting, down) with mixed filters. Events are
written concurrently through the API while: the functions' AWS calls meet injected throttling,
5xx errors, lost answers and unprocessed batch items; worker processes of the fan-out and delivery
functions are killed mid-batch; the stream hands some batches over twice and gives some up to the
fan-out failure queue; retries run on a shortened schedule. Then every (event, endpoint) pair the
filters call for must have been received (2xx, signature verified) or be visibly failed; anything
else is lost.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from chaos.cost import Usage, per_million
from chaos.receivers import PROFILES, Receiver, Trap
from meshanics import catalog, filters
from meshanics_local.awscalls import FaultPlan
from meshanics_local.stack import LocalPlatform
from meshanics_local.triggers import StreamFaults

# Shares of the event types written (all of them subscribable metadata events).
EVENT_MIX: tuple[tuple[str, float], ...] = (
    ("rollout.created", 0.22),
    ("rollout.state_changed", 0.25),
    ("device.status_changed", 0.2),
    ("device.enrolled", 0.14),
    ("artifact.published", 0.12),
    ("artifact.revoked", 0.03),
    ("vulnerability.detected", 0.04),
)
FAULTED_FUNCTIONS = ("FanoutFunction", "DeliverFunction", "FanoutRecoveryFunction", "ReplayFunction")
KILLED_FUNCTIONS = ("FanoutFunction", "DeliverFunction")
SCOPES = ["integrations:admin", "events:write"]


@dataclass(frozen=True)
class Scenario:
    seed: int = 7
    tenants: int = 3
    profiles: tuple[str, ...] = tuple(PROFILES)
    min_deliveries: int = 20_000
    min_events: int = 2_000
    events_per_second: float = 12.0
    # Writers pause while more jobs than this wait in the delivery queue: the run measures what
    # faults leave behind, not how long a backlog takes to clear on one machine's emulation.
    max_backlog: int = 300
    writers: int = 4
    # Retries shortened by template parameters (four attempts over about 7 s).
    retry_schedule: str = "0,1,2,4"
    connect_timeout_ms: int = 1000
    read_timeout_ms: int = 1000
    deadline_ms: int = 2000
    # The delivery queue's visibility timeout: how long a killed invocation's jobs stay hidden.
    visibility_timeout: int = 180
    kill_every: float = 10.0
    kill_until: float = 0.7  # share of the write phase during which workers are killed
    error_rate: float = 0.01
    ambiguous_share: float = 0.2
    unprocessed_rate: float = 0.1
    duplicate_rate: float = 0.1
    discard_batches: int = 2
    deliver_workers: int = 4
    drain_slack: float = 30.0  # on top of the schedule and one visibility timeout: the last backlog
    cost_events: tuple[int, int] = (400, 100)  # events for 1 and 10 endpoints per event


@dataclass
class Endpoint:
    tenant: str
    id: str
    filters: list[str]
    receiver: Receiver


@dataclass
class Written:
    tenant: str
    sequence: int
    type: str


@dataclass
class Outcome:
    expected: int = 0
    delivered: int = 0
    failed: int = 0
    lost: int = 0
    duplicates: int = 0
    trap_connections: int = 0
    verified: int = 0
    bad_signatures: int = 0
    write_errors: int = 0
    events: int = 0
    write_seconds: float = 0.0
    drain_seconds: float = 0.0
    drain_bound: float = 0.0
    kills: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    stream: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    lost_pairs: list[tuple[str, int]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.trap_connections == 0
            and self.bad_signatures == 0
            and self.write_errors == 0
            and self.drain_seconds <= self.drain_bound
        )

    def rows(self) -> list[dict[str, Any]]:
        per_million = self.duplicates / max(1, self.delivered) * 1e6
        return [
            {"figure": "events written (3 tenants, concurrently)", "value": self.events},
            {"figure": "(event, endpoint) pairs expected", "value": self.expected},
            {"figure": "delivered (2xx, signature verified)", "value": self.delivered},
            {"figure": "visibly failed (history: failed, replayable)", "value": self.failed},
            {"figure": "LOST (must be 0)", "value": self.lost},
            {"figure": "duplicates seen", "value": f"{self.duplicates} ({per_million:,.0f} per million)"},
            {"figure": "connections to refused addresses (must be 0)", "value": self.trap_connections},
            {"figure": "delivered bodies whose signature verified", "value": f"{self.verified} of {self.verified}"},
            {"figure": "bodies whose signature did not verify (must be 0)", "value": self.bad_signatures},
            {"figure": "write phase", "value": f"{self.write_seconds:.0f} s"},
            {
                "figure": "time to drain after the last write",
                "value": f"{self.drain_seconds:.0f} s (bound {self.drain_bound:.0f} s: schedule + one visibility "
                "timeout + slack)",
            },
        ]

    def fault_rows(self) -> list[dict[str, Any]]:
        rows = [{"fault": f"worker killed mid-batch: {k}", "count": v} for k, v in sorted(self.kills.items())]
        rows += [{"fault": f"AWS {k}", "count": v} for k, v in sorted(self.faults.items())]
        rows += [{"fault": f"stream batches {k}", "count": v} for k, v in sorted(self.stream.items())]
        rows += [{"fault": f"receiver answer: {k}", "count": v} for k, v in sorted(self.answers.items())]
        return rows


def _event_data(event_type: str, index: int) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for spec in catalog.CATALOG[event_type].fields:
        if not spec.required and index % 3:
            continue
        if spec.kind == "integer":
            data[spec.name] = index
        elif spec.kind == "boolean":
            data[spec.name] = bool(index % 2)
        elif spec.kind == "string_list":
            data[spec.name] = ["linux/arm64"]
        elif spec.kind == "timestamp":
            data[spec.name] = "2026-12-01T00:00:00Z"
        elif "digest" in spec.name:
            data[spec.name] = "sha256:" + f"{index:064x}"
        else:
            data[spec.name] = f"{spec.name.split('_')[0]}-{index}"
    return data


def plan_events(scenario: Scenario, endpoints: Sequence[Endpoint]) -> list[tuple[str, str, int]]:
    """(tenant, type, index) in a seeded order, until the filters call for enough deliveries."""
    rng = random.Random(scenario.seed)
    types = [t for t, _ in EVENT_MIX]
    weights = [w for _, w in EVENT_MIX]
    by_tenant: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        by_tenant.setdefault(endpoint.tenant, []).append(endpoint)
    tenants = sorted(by_tenant)
    planned: list[tuple[str, str, int]] = []
    pairs = 0
    while pairs < scenario.min_deliveries or len(planned) < scenario.min_events:
        tenant = tenants[len(planned) % len(tenants)]
        event_type = rng.choices(types, weights)[0]
        planned.append((tenant, event_type, len(planned)))
        pairs += sum(filters.matches(e.filters, event_type) for e in by_tenant[tenant])
    return planned


class Chaos:
    def __init__(self, scenario: Scenario, state_dir: Path) -> None:
        self.scenario = scenario
        self.state_dir = state_dir
        self.trap = Trap()
        self.endpoints: list[Endpoint] = []
        self.keys: dict[str, str] = {}
        self.written: list[Written] = []
        self.outcome = Outcome()
        self._lock = threading.Lock()
        self.stack: LocalPlatform | None = None

    # -- the stack ----------------------------------------------------------------------------
    def start(self) -> LocalPlatform:
        s = self.scenario
        plan = FaultPlan(
            seed=s.seed,
            error_rate=s.error_rate,
            ambiguous_share=s.ambiguous_share,
            unprocessed_rate=s.unprocessed_rate,
        )
        self.stack = LocalPlatform(
            api_port=0,
            aws_port=0,
            state_dir=self.state_dir,
            parameter_overrides={
                "DeliveryRetrySchedule": s.retry_schedule,
                "DeliveryMaxAttempts": str(len(s.retry_schedule.split(","))),
                "DeliveryConnectTimeoutMs": str(s.connect_timeout_ms),
                "DeliveryReadTimeoutMs": str(s.read_timeout_ms),
                "DeliveryDeadlineMs": str(s.deadline_ms),
                "ReplaySchedule": "rate(1 minute)",
                # Each endpoint change waits this out; a quarter second keeps the 24 creations short.
                "SubscriptionCacheMs": "250",
            },
            pool_sizes={"DeliverFunction": s.deliver_workers},
            function_environment={name: {"MESHANICS_FAULTS": plan.to_env()} for name in FAULTED_FUNCTIONS},
            demo_key=False,
        )
        self.stack.start()
        sqs = self.stack.client("sqs")
        sqs.set_queue_attributes(
            QueueUrl=self.stack.physical("DeliveryQueue"), Attributes={"VisibilityTimeout": str(s.visibility_timeout)}
        )
        for poller in self.stack.stream_pollers:
            poller.faults = StreamFaults(duplicate_rate=s.duplicate_rate, seed=s.seed)
        return self.stack

    def api(self, method: str, path: str, tenant: str, session: requests.Session, **kwargs: Any) -> Any:
        assert self.stack is not None and self.stack.api_url is not None
        response = session.request(
            method,
            self.stack.api_url + path,
            headers={"Authorization": f"Bearer {self.keys[tenant]}"},
            timeout=30,
            **kwargs,
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def subscribe(self, receivers_per_tenant: dict[str, list[Receiver]]) -> None:
        from meshanics.store.apikeys import ApiKeyStore

        assert self.stack is not None
        dynamodb = self.stack.client("dynamodb")
        keys = ApiKeyStore(lambda: dynamodb, self.stack.environment()["INTEGRATIONS_TABLE"])
        session = requests.Session()
        for tenant, receivers in receivers_per_tenant.items():
            self.keys[tenant], _ = keys.create(tenant, SCOPES, name="chaos")
            for receiver in receivers:
                wanted = PROFILES[receiver.name][1]
                body = {"url": receiver.url, "events": wanted, "allow_private_network": True}
                created = self.api("POST", "/v1/webhooks", tenant, session, json=body)
                receiver.secret, receiver.endpoint_id = created["secret"], created["id"]
                self.endpoints.append(Endpoint(tenant, created["id"], wanted, receiver))

    # -- the load -----------------------------------------------------------------------------
    def write(self, planned: Sequence[tuple[str, str, int]]) -> None:
        s = self.scenario
        started = time.monotonic()
        local = threading.local()

        pace = threading.Lock()
        next_slot = [started]

        def one(item: tuple[str, str, int]) -> None:
            tenant, event_type, index = item
            with pace:  # at most events_per_second, even after a pause for the backlog
                slot = max(next_slot[0], time.monotonic())
                next_slot[0] = slot + 1 / s.events_per_second
            time.sleep(max(0.0, slot - time.monotonic()))
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            body = {"type": event_type, "subject": f"chaos/{index}", "data": _event_data(event_type, index)}
            for _ in range(3):
                try:
                    answer = self.api("POST", "/v1/events", tenant, session, json=body)
                except requests.RequestException:
                    continue
                with self._lock:
                    self.written.append(Written(tenant, int(answer["items"][0]["sequence"]), event_type))
                return
            with self._lock:
                self.outcome.write_errors += 1

        assert self.stack is not None
        sqs, queue = self.stack.client("sqs"), self.stack.physical("DeliveryQueue")
        clear = threading.Event()
        clear.set()
        done = threading.Event()

        def watch_backlog() -> None:
            while not done.wait(0.5):
                waiting = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessages"])
                if int(waiting["Attributes"]["ApproximateNumberOfMessages"]) > s.max_backlog:
                    clear.clear()
                else:
                    clear.set()

        def paced(item: tuple[str, str, int]) -> None:
            clear.wait()
            one(item)

        watcher = threading.Thread(target=watch_backlog, name="chaos-backlog", daemon=True)
        watcher.start()
        try:
            with ThreadPoolExecutor(max_workers=s.writers) as pool:
                list(pool.map(paced, planned))
        finally:
            done.set()
            watcher.join()
        self.outcome.events = len(self.written)
        self.outcome.write_seconds = time.monotonic() - started

    @contextmanager
    def faults_during(self, phase_seconds: float) -> Iterator[None]:
        """Kill workers and give stream batches up while the load runs."""
        assert self.stack is not None
        stack, s = self.stack, self.scenario
        stop = threading.Event()
        rng = random.Random(s.seed)

        def killer() -> None:
            started = time.monotonic()
            turn = 0
            discarded = 0
            while not stop.wait(s.kill_every):
                elapsed = time.monotonic() - started
                if elapsed > phase_seconds * s.kill_until:
                    continue
                function = KILLED_FUNCTIONS[turn % len(KILLED_FUNCTIONS)]
                turn += 1
                # Catch one of its workers mid-invocation (they are idle between batches).
                give_up = time.monotonic() + 2.0
                while time.monotonic() < give_up and not stop.is_set():
                    if stack.pools[function].kill_busy(rng.choice):
                        self.outcome.kills[function] = self.outcome.kills.get(function, 0) + 1
                        break
                    time.sleep(0.02)
                due = phase_seconds * (discarded + 1) / (s.discard_batches + 2)
                if discarded < s.discard_batches and elapsed > due:
                    for poller in stack.stream_pollers:
                        poller.faults.discard_batches += 1
                    discarded += 1

        thread = threading.Thread(target=killer, name="chaos-killer", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    # -- the account --------------------------------------------------------------------------
    def expected(self) -> set[tuple[str, int]]:
        """(endpoint id, sequence) for every written event each endpoint's filters call for."""
        pairs: set[tuple[str, int]] = set()
        for event in self.written:
            for endpoint in self.endpoints:
                if endpoint.tenant == event.tenant and filters.matches(endpoint.filters, event.type):
                    pairs.add((endpoint.id, event.sequence))
        return pairs

    def received(self) -> set[tuple[str, int]]:
        return {(e.id, sequence) for e in self.endpoints for sequence in e.receiver.sequences()}

    def drain(self, expected: set[tuple[str, int]]) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        """Wait until every expected pair is received or visibly failed (or the bound passes)."""
        s = self.scenario
        schedule = sum(int(d) for d in s.retry_schedule.split(",")) * 1.2
        attempts = len(s.retry_schedule.split(",")) * s.deadline_ms / 1000
        self.outcome.drain_bound = schedule + attempts + s.visibility_timeout + s.drain_slack
        started = time.monotonic()
        deadline = started + self.outcome.drain_bound
        failed: set[tuple[str, int]] = set()
        tenant_of = {e.id: e.tenant for e in self.endpoints}
        session = requests.Session()
        last_progress = started
        while True:
            open_pairs = expected - self.received() - failed
            if not open_pairs:
                last_progress = time.monotonic()
                break
            if time.monotonic() > deadline:
                break
            if len(open_pairs) <= 400:
                for endpoint_id, sequence in sorted(open_pairs):
                    delivery_id = f"dlv_{endpoint_id.removeprefix('ep_')}_{sequence}"
                    try:
                        detail = self.api("GET", f"/v1/deliveries/{delivery_id}", tenant_of[endpoint_id], session)
                    except requests.HTTPError:
                        continue
                    if detail["status"] == "failed":
                        failed.add((endpoint_id, sequence))
                        last_progress = time.monotonic()
            time.sleep(2.0)
        latest_accept = max((e.receiver.last_accept for e in self.endpoints), default=started)
        self.outcome.drain_seconds = max(0.0, max(latest_accept, last_progress) - started)
        return expected - self.received() - failed, failed

    def account(self) -> Outcome:
        expected = self.expected()
        lost, failed = self.drain(expected)
        received = self.received() & expected
        o = self.outcome
        o.expected, o.delivered, o.failed, o.lost = len(expected), len(received), len(failed - received), len(lost)
        o.lost_pairs = sorted(lost)[:20]
        o.duplicates = sum(max(0, n - 1) for e in self.endpoints for n in e.receiver.accepted.values())
        o.trap_connections = self.trap.connections
        o.verified = sum(e.receiver.verified for e in self.endpoints)
        o.bad_signatures = sum(e.receiver.bad_signatures for e in self.endpoints)
        o.refusals = [f"{e.receiver.name}@{e.tenant}: {r}" for e in self.endpoints for r in e.receiver.refusals]
        assert self.stack is not None
        for used in self.stack.take_usage().values():
            for kind, count in used.faults.items():
                o.faults[kind] = o.faults.get(kind, 0) + count
        for poller in self.stack.stream_pollers:
            o.stream["handed over twice"] = o.stream.get("handed over twice", 0) + poller.faults.duplicated
            o.stream["given up to the failure queue"] = (
                o.stream.get("given up to the failure queue", 0) + poller.faults.discarded
            )
        for endpoint in self.endpoints:
            for kind, count in endpoint.receiver.answers.items():
                o.answers[kind] = o.answers.get(kind, 0) + count
        return o


def receivers(scenario: Scenario, trap: Trap) -> dict[str, list[Receiver]]:
    deadline = scenario.deadline_ms / 1000
    built: dict[str, list[Receiver]] = {}
    for index in range(scenario.tenants):
        tenant = f"chaos-{index + 1}"
        built[tenant] = [
            Receiver(
                name,
                tenant,
                PROFILES[name][0],
                scenario.seed,
                trap.url,
                hang_seconds=scenario.read_timeout_ms / 1000 + 1.5,
                drip_seconds=deadline / 8,  # each byte well within the read timeout; the whole past the deadline
            )
            for name in scenario.profiles
        ]
    return built


def run(scenario: Scenario, log: Callable[[str], None] = print) -> Outcome:
    state = tempfile.mkdtemp(prefix="meshanics-chaos-")
    outcome: Outcome | None = None
    try:
        outcome = _run(scenario, Path(state), log)
        return outcome
    finally:
        if outcome is not None and outcome.ok:
            shutil.rmtree(state, ignore_errors=True)
        else:
            log(f"the local platform's logs are kept in {state}/logs")


def _run(scenario: Scenario, state: Path, log: Callable[[str], None]) -> Outcome:
    chaos = Chaos(scenario, state)
    chaos.trap.start()
    built = receivers(scenario, chaos.trap)
    for group in built.values():
        for receiver in group:
            receiver.start()
    try:
        log("starting the local platform with faults in " + ", ".join(FAULTED_FUNCTIONS))
        chaos.start()
        chaos.subscribe(built)
        planned = plan_events(scenario, chaos.endpoints)
        log(f"writing {len(planned)} events to {len(chaos.endpoints)} endpoints of {scenario.tenants} tenants")
        with chaos.faults_during(len(planned) / scenario.events_per_second):
            chaos.write(planned)
        log(f"written in {chaos.outcome.write_seconds:.0f} s; draining")
        return chaos.account()
    finally:
        if chaos.stack is not None:
            chaos.stack.stop()
        for group in built.values():
            for receiver in group:
                receiver.stop()
        chaos.trap.stop()


def measure_cost(scenario: Scenario, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Clean runs (no faults) of one and of ten endpoints per event; usage priced per million deliveries."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="meshanics-cost-") as state:
        stack = LocalPlatform(api_port=0, aws_port=0, state_dir=Path(state), demo_key=False)
        trap = Trap()
        with stack:
            chaos = Chaos(scenario, Path(state))
            chaos.stack = stack
            memory = {k: v.memory_mb for k, v in stack.functions.items()}
            sqs_triggered = {m.function for m in stack.mappings if m.kind == "sqs"}
            for per_event, events in ((1, scenario.cost_events[0]), (10, scenario.cost_events[1])):
                tenant = f"cost-{per_event}"
                group = [
                    Receiver("steady", tenant, PROFILES["steady"][0], scenario.seed, trap.url, 0, 0)
                    for _ in range(per_event)
                ]
                for receiver in group:
                    receiver.start()
                try:
                    chaos.subscribe({tenant: group})
                    for endpoint in chaos.endpoints:
                        endpoint.filters = ["rollout.*"]
                    stack.take_usage()
                    planned = [(tenant, "rollout.created", i) for i in range(events)]
                    chaos.write(planned)
                    deadline = time.monotonic() + 120
                    while sum(len(r.accepted) for r in group) < events * per_event and time.monotonic() < deadline:
                        time.sleep(0.5)
                    time.sleep(1.5)  # the last batch's accounting reaches the stack
                    delivered = sum(len(r.accepted) for r in group)
                    used = stack.take_usage()
                    wanted = ("FanoutFunction", "DeliverFunction", "ApiFunction")
                    priced = {k: v for k, v in used.items() if k in wanted}
                    usage = Usage.of({k: v for k, v in priced.items() if k != "ApiFunction"}, memory, sqs_triggered)
                    # Producing the event: its audit write and sequence allocation, not the API call itself.
                    api = priced.get("ApiFunction")
                    if api is not None:
                        usage = Usage(
                            usage.lambda_requests,
                            usage.gb_seconds,
                            usage.dynamodb_writes + api.dynamodb_writes,
                            usage.dynamodb_reads,
                            usage.sqs_requests,
                            usage.kms_requests,
                            usage.aws_requests + sum(n for k, n in api.requests.items() if k.startswith("dynamodb:")),
                        )
                    log(f"cost: {per_event} endpoint(s) per event: {delivered} deliveries")
                    rows.append({"endpoints per event": per_event, **per_million(usage, max(1, delivered))})
                finally:
                    for receiver in group:
                        receiver.stop()
                    chaos.endpoints.clear()
    return rows
