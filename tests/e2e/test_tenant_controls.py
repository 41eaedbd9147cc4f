"""Tenant controls against a freshly started local platform, over real HTTP: the README's
Idempotency-Key example, and `meshanics registries list|approve|remove`, both on the local platform
(.local/stack.json) and with `--stack-name` (the stack in the AWS emulation, as a deployed one)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from meshanics_local.receiver import running_receiver
from meshanics_local.stack import LocalPlatform

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("meshanics"))
STACK_NAME = "meshanics-controls"
# One audit shard (the default is 16): the CLI's audit events land in partition #0 only if it
# writes with the stack's parameters, not the core's defaults.
SHARDS = "1"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("controls")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(
        api_port=0,
        aws_port=0,
        state_dir=workdir / ".local",
        stack_name=STACK_NAME,
        parameter_overrides={"AuditShards": SHARDS},
        pool_sizes={"*": 1},
    ) as s:
        yield s


@pytest.fixture(scope="module")
def key(stack: LocalPlatform, workdir: Path) -> str:
    return (workdir / ".local" / "demo-key").read_text().strip()


def api(stack: LocalPlatform, key: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
    return requests.request(method, f"{stack.api_url}{path}", headers=headers, timeout=30, **kwargs)


def connect(stack: LocalPlatform, key: str, name: str) -> dict[str, Any]:
    body = {
        "name": name,
        "upstream_url": "http://127.0.0.1:5999",
        "credentials": {"type": "basic", "username": "puller", "password": "secret"},
        "allow_private_network": True,
    }
    answer = api(stack, key, "POST", "/v1/registries", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]


# -- Idempotency-Key, as the README shows it ------------------------------------------------------
def test_the_readme_idempotency_example(stack: LocalPlatform, key: str) -> None:
    idempotency_key = str(uuid.uuid4())
    event = {"type": "rollout.created", "subject": "rollout/r-7", "data": {"rollout_id": "r-7", "device_count": 3}}
    headers = {"Idempotency-Key": idempotency_key}
    first = api(stack, key, "POST", "/v1/events", json=event, headers=headers)
    again = api(stack, key, "POST", "/v1/events", json=event, headers=headers)
    assert first.status_code == again.status_code == 201, first.text
    assert again.json() == first.json()
    changed = api(stack, key, "POST", "/v1/events", json=event | {"subject": "rollout/r-8"}, headers=headers)
    assert changed.status_code == 422 and changed.json()["error"]["code"] == "idempotency_key_reused"
    bad = api(stack, key, "POST", "/v1/events", json=event, headers={"Idempotency-Key": "x" * 256})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "Idempotency-Key"

    # Through API Gateway's emulation and a real function worker: a created endpoint's secret is
    # answered again to a retry, and is nowhere in the clear in the table the template declares.
    hook = {"url": "http://127.0.0.1:5998/hooks", "events": ["rollout.*"], "allow_private_network": True}
    created = api(stack, key, "POST", "/v1/webhooks", json=hook, headers=headers)
    retried = api(stack, key, "POST", "/v1/webhooks", json=hook, headers=headers)
    assert created.status_code == retried.status_code == 201 and created.json() == retried.json()
    table = stack.environment("ApiFunction")["IDEMPOTENCY_TABLE"]
    assert table == stack.physical("IdempotencyTable")
    dynamodb = boto3.client("dynamodb", **_aws(stack))
    items = dynamodb.scan(TableName=table)["Items"]
    assert len(items) == 2  # the event and the endpoint: the same key, two routes
    assert created.json()["secret"] not in json.dumps(items)
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


# -- meshanics registries -------------------------------------------------------------------------
def _aws(stack: LocalPlatform) -> dict[str, str]:
    return {
        "endpoint_url": stack.aws_url,
        "region_name": stack.region,
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [CLI, *args], cwd=cwd, env=base | (env or {}), capture_output=True, text=True, timeout=60, check=False
    )


def _audit_partitions(stack: LocalPlatform) -> set[str]:
    table = stack.environment("ApiFunction")["AUDIT_TABLE"]
    items = boto3.client("dynamodb", **_aws(stack)).scan(TableName=table)["Items"]
    return {i["partition"]["S"] for i in items if i["type"]["S"].startswith("registry.")}


def _registries_cli_round(stack: LocalPlatform, key: str, run: Any, tenant: str) -> None:
    pending = connect(stack, key, f"corp-{uuid.uuid4().hex[:8]}")
    other = connect(stack, key, f"mirror-{uuid.uuid4().hex[:8]}")

    listed = run("registries", "list", "--tenant", tenant, "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {c["id"]: c for c in json.loads(listed.stdout)}
    assert {pending["id"], other["id"]} <= set(by_id)
    assert by_id[pending["id"]]["status"] == "pending"
    assert "secret" not in listed.stdout and "password" not in listed.stdout  # never the credentials
    table = run("registries", "list", "--tenant", tenant)
    assert table.returncode == 0 and table.stdout.startswith("REGISTRY ID")
    assert pending["id"] in table.stdout and pending["name"] in table.stdout and "pending" in table.stdout

    approved = run("registries", "approve", "--tenant", tenant, pending["id"])
    assert approved.returncode == 0, approved.stderr
    shown = json.loads(approved.stdout)
    assert (shown["id"], shown["status"], shown["approved_by"]) == (pending["id"], "approved", "operator:cli")
    # The API sees what the CLI did.
    got = api(stack, key, "GET", f"/v1/registries/{pending['id']}").json()
    assert got["status"] == "approved" and got["approved_by"] == "operator:cli"
    only_approved = json.loads(run("registries", "list", "--tenant", tenant, "--status", "approved", "--json").stdout)
    assert pending["id"] in {c["id"] for c in only_approved} and other["id"] not in {c["id"] for c in only_approved}

    removed = run("registries", "remove", "--tenant", tenant, other["id"])
    assert removed.returncode == 0 and removed.stdout == "", removed.stderr
    assert f"removed {other['id']}" in removed.stderr
    assert api(stack, key, "GET", f"/v1/registries/{other['id']}").status_code == 404
    left = {c["id"] for c in json.loads(run("registries", "list", "--tenant", tenant, "--json").stdout)}
    assert other["id"] not in left and pending["id"] in left

    # Errors: a clear message and exit code 2, nothing changed.
    missing = run("registries", "approve", "--tenant", tenant, other["id"])
    assert missing.returncode == 2 and missing.stderr.startswith("meshanics: ") and missing.stdout == ""
    assert run("registries", "remove", "--tenant", tenant, other["id"]).returncode == 2
    # The audit events the CLI wrote are where the functions read them (the stack's one shard).
    assert _audit_partitions(stack) == {f"{tenant}#0"}


def test_cli_registries_against_the_local_stack(stack: LocalPlatform, key: str, workdir: Path) -> None:
    state = json.loads((workdir / ".local" / "stack.json").read_text())
    _registries_cli_round(stack, key, lambda *args: cli(workdir, *args), state["demo_tenant"])


def test_cli_registries_with_stack_name(stack: LocalPlatform, key: str, tmp_path: Path) -> None:
    """As against a deployed stack: resources and parameters read from CloudFormation (the emulation's),
    credentials and region from the environment; no .local/stack.json in reach."""
    assert not (tmp_path / ".local").exists()
    env = {
        "AWS_ENDPOINT_URL": stack.aws_url,
        "AWS_DEFAULT_REGION": stack.region,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    tenant = json.loads((stack.state_dir / "stack.json").read_text())["demo_tenant"]
    _registries_cli_round(stack, key, lambda *args: cli(tmp_path, "--stack-name", STACK_NAME, *args, env=env), tenant)
    unknown = cli(tmp_path, "--stack-name", "no-such-stack", "registries", "list", "--tenant", tenant, env=env)
    assert unknown.returncode == 2 and "could not read stack no-such-stack" in unknown.stderr


# -- scheduled replays and `meshanics replays` ----------------------------------------------------
def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _wait_for(check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def test_a_scheduled_replay_fires_and_the_cli_lists_and_cancels(stack: LocalPlatform, key: str, workdir: Path) -> None:
    tenant = json.loads((workdir / ".local" / "stack.json").read_text())["demo_tenant"]
    with running_receiver() as receiver:
        hook = {"url": receiver.url, "events": ["rollout.*"], "allow_private_network": True}
        webhook = api(stack, key, "POST", "/v1/webhooks", json=hook).json()
        event = {"type": "rollout.created", "subject": "rollout/r-9", "data": {"rollout_id": "r-9"}}
        assert api(stack, key, "POST", "/v1/events", json=event).status_code == 201
        _wait_for(lambda: receiver.requests)
        first_key = json.loads(receiver.requests[0].body)["idempotency_key"]

        since = _iso(time.time() - 600)
        soon = api(
            stack,
            key,
            "POST",
            f"/v1/webhooks/{webhook['id']}/recover",
            # Seconds ahead, not one: `at` is to the second and must still be ahead when the API reads it.
            json={"since": since, "status": "all", "at": _iso(time.time() + 8)},
        )
        assert soon.status_code == 202 and soon.json()["status"] == "scheduled", soon.text
        later_body = {"since": since, "at": _iso(time.time() + 3600)}
        later = api(stack, key, "POST", f"/v1/webhooks/{webhook['id']}/recover", json=later_body).json()

        # The local platform fires the one-time schedule at its time; the replay function runs it.
        def completed() -> dict[str, Any] | None:
            shown = api(stack, key, "GET", f"/v1/replays/{soon.json()['id']}").json()
            return shown if shown["status"] == "completed" else None

        done = _wait_for(completed)
        assert done["counts"] == {"queued": 1, "sent": 1, "failed": 0, "skipped": 0}
        _wait_for(lambda: len(receiver.requests) == 2)
        assert json.loads(receiver.requests[1].body)["idempotency_key"] == first_key  # the same event, again
        scheduler = boto3.client("scheduler", **_aws(stack))
        group = stack.environment("ApiFunction")["REPLAY_SCHEDULE_GROUP"]
        names = {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}
        assert soon.json()["id"] not in names and later["id"] in names  # deleted after it fired

    listed = cli(workdir, "replays", "list", "--tenant", tenant, "--json")
    assert listed.returncode == 0, listed.stderr
    by_id = {r["id"]: r for r in json.loads(listed.stdout)}
    assert by_id[soon.json()["id"]]["status"] == "completed" and by_id[later["id"]]["status"] == "scheduled"
    table = cli(workdir, "replays", "list", "--tenant", tenant, "--webhook", webhook["id"])
    assert table.returncode == 0 and table.stdout.startswith("REPLAY ID") and later["id"] in table.stdout

    cancelled = cli(workdir, "replays", "cancel", "--tenant", tenant, later["id"])
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["status"] == "cancelled"
    assert later["id"] not in {s["Name"] for s in scheduler.list_schedules(GroupName=group)["Schedules"]}
    assert api(stack, key, "GET", f"/v1/replays/{later['id']}").json()["status"] == "cancelled"
    refused = cli(workdir, "replays", "cancel", "--tenant", tenant, soon.json()["id"])
    assert refused.returncode == 2 and "completed" in refused.stderr
