"""The README's walkthrough against a freshly started local platform: the demo receiver, an endpoint,
an event, the verified delivery, the history, a test delivery; and the `meshanics` CLI's keys."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from meshanics_local.stack import LocalPlatform

pytestmark = pytest.mark.e2e
CLI = str(Path(sys.executable).with_name("meshanics"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("walkthrough")


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[LocalPlatform]:
    with LocalPlatform(api_port=0, aws_port=0, state_dir=workdir / ".local") as s:
        yield s


def test_readme_walkthrough(stack: LocalPlatform, workdir: Path) -> None:
    secret_file = workdir / ".local" / "receiver-secret"
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, "-m", "meshanics_local.receiver", "--port", str(port), "--secret-file", str(secret_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None
        assert receiver.stdout.readline().startswith("receiving on")
        key = (workdir / ".local" / "demo-key").read_text().strip()
        api = stack.api_url
        headers = {"Authorization": f"Bearer {key}"}
        body = {"url": f"http://127.0.0.1:{port}/hooks", "events": ["rollout.*"], "allow_private_network": True}
        created = requests.post(f"{api}/v1/webhooks", json=body, headers=headers, timeout=30)
        assert created.status_code == 201, created.text
        secret_file.write_text(created.json()["secret"] + "\n")
        event = {"type": "rollout.created", "subject": "rollout/r-1", "data": {"rollout_id": "r-1", "device_count": 25}}
        written = requests.post(f"{api}/v1/events", json=event, headers=headers, timeout=30)
        assert written.status_code == 201, written.text
        line = receiver.stdout.readline()
        assert line.startswith("verified rollout.created"), line
        assert written.json()["items"][0]["idempotency_key"] in line
        webhook_id = created.json()["id"]
        deadline = time.monotonic() + 20
        while True:
            history = requests.get(f"{api}/v1/webhooks/{webhook_id}/deliveries", headers=headers, timeout=30).json()
            if (history["items"] and history["items"][0]["status"] == "delivered") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [d["status"] for d in history["items"]] == ["delivered"]
        tested = requests.post(f"{api}/v1/webhooks/{webhook_id}/test", headers=headers, timeout=30).json()
        assert tested["status"] == "delivered" and tested["status_code"] == 204
        assert receiver.stdout.readline().startswith("verified test.ping")
    finally:
        receiver.terminate()
        receiver.wait(10)


def test_cli_keys_against_the_local_stack(stack: LocalPlatform, workdir: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return subprocess.run([CLI, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60)

    made = cli("keys", "create", "--tenant", "acme", "--scope", "integrations:read", "--scope", "events:write")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("msk_") and "\n" not in key  # the key alone on stdout
    listing = cli("keys", "list", "--tenant", "acme", "--json")
    (entry,) = json.loads(listing.stdout)
    assert entry["scopes"] == ["integrations:read", "events:write"] and key not in listing.stdout
    answer = requests.get(f"{stack.api_url}/v1/webhooks", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"items": [], "next_cursor": None}
    refused = requests.post(
        f"{stack.api_url}/v1/webhooks", json={}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert refused.status_code == 403
    assert cli("keys", "revoke", "--tenant", "acme", entry["key_id"]).returncode == 0
    (revoked,) = json.loads(cli("keys", "list", "--tenant", "acme", "--json").stdout)
    assert revoked["revoked_at"]
    bad = cli("keys", "create", "--tenant", "Not A Tenant", "--scope", "integrations:read")
    assert bad.returncode == 2 and "tenant id must be" in bad.stderr
