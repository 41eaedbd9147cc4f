"""`python -m meshanics_local` (what `make run` runs): starts, answers, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from meshanics_local.__main__ import parse_args

ROOT = Path(__file__).resolve().parents[2]


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _listening(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) == 0


def test_flags_and_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHANICS_API_PORT", "3100")
    monkeypatch.setenv("MESHANICS_AWS_PORT", "5100")
    args = parse_args(["--parameter-overrides", "DeliveryMaxAttempts=3", "--schedule-scale", "60"])
    assert (args.port, args.aws_port, args.schedule_scale) == (3100, 5100, 60.0)
    assert args.parameter_overrides == ["DeliveryMaxAttempts=3"]
    assert parse_args(["--port", "0"]).port == 0


def test_run_answers_then_stops_cleanly(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MESHANICS_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "meshanics_local",
            "--port",
            "0",
            "--aws-port",
            "0",
            "--state-dir",
            str(tmp_path),
            "--ready-file",
            str(ready),
            "--pool-size",
            "*=1",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline, "the local platform did not become ready"
            time.sleep(0.1)
        state = json.loads((tmp_path / "stack.json").read_text())
        key = (tmp_path / "demo-key").read_text()
        assert key.startswith("msk_") and key.endswith("\n") and key.count("\n") == 1
        assert state["environment"]["INTEGRATIONS_TABLE"] == state["resources"]["IntegrationsTable"]["physical_id"]
        assert requests.get(f"{state['api_url']}/v1/webhooks", timeout=10).status_code == 401
        children = _children(process.pid)
        assert children  # moto and the function workers
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        output = process.stdout.read() if process.stdout else ""
        assert "Demo API key" in output and key.strip() in output and "stopping" in output
        assert f"Console        {state['api_url']}/console" in output
        assert not ready.exists()
        assert not _listening(state["api_url"]) and not _listening(state["aws_endpoint"])
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in children)
        assert (tmp_path / "logs" / "FanoutFunction.log").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
