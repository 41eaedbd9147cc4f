"""`python -m meshanics_local` (`make run`): the whole system on this machine, from template.yaml."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from meshanics_local.stack import DEFAULT_API_PORT, DEFAULT_AWS_PORT, REPO_ROOT, LocalPlatform


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} must look like NAME=VALUE, got {value!r}")
        pairs[key] = rest
    return pairs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m meshanics_local",
        description="Run Meshanics Integrations locally: moto for AWS, the template's functions in worker "
        "processes, Lambda's pollers and an API Gateway front, all wired from template.yaml.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("MESHANICS_API_PORT") or DEFAULT_API_PORT),
        help="API port (env MESHANICS_API_PORT, default %(default)s; 0 picks a free one)",
    )
    parser.add_argument(
        "--aws-port",
        type=int,
        default=int(os.environ.get("MESHANICS_AWS_PORT") or DEFAULT_AWS_PORT),
        help="AWS emulation port (env MESHANICS_AWS_PORT, default %(default)s; 0 picks a free one)",
    )
    parser.add_argument("--template", type=Path, default=REPO_ROOT / "template.yaml", help="SAM template")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / ".local", help="stack.json, demo-key, logs/")
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter values, e.g. DeliveryRetrySchedule=0,1,1 DeliveryMaxAttempts=3",
    )
    parser.add_argument(
        "--pool-size",
        action="append",
        default=[],
        metavar="FUNCTION=N",
        help="workers for a function (logical id, or * for all); default 2 for API and queue consumers, else 1",
    )
    parser.add_argument(
        "--schedule-scale",
        type=float,
        default=1.0,
        help="divide schedule periods by this (e.g. 60 runs a 15-minute sweep every 15 s)",
    )
    parser.add_argument("--ready-file", type=Path, help="touched once everything is up")
    return parser.parse_args(argv)


def summary(stack: LocalPlatform) -> str:
    state = stack.describe()
    lines = [
        "Meshanics Integrations: local platform",
        f"  AWS emulation  {state['aws_endpoint']}  (moto, region {state['region']}, any credentials)",
        f"  API            {state['api_url']}  (REST API stage '{state['api_stage']}', served at the root)",
        f"  Console        {state['api_url']}/console  (sign in with an API key, e.g. the demo key below)",
        "",
        "  Functions (logs in " + state["log_dir"] + "/<function>.log)",
    ]
    for logical_id, function in state["functions"].items():
        missing = "" if function["code_present"] else "  [code missing: invocations fail]"
        lines.append(f"    {logical_id:<20} {function['workers']} worker(s), {function['timeout']:g}s{missing}")
        lines += [f"      <- {trigger}" for trigger in function["triggers"]]
    lines += ["", "  Resources"]
    for logical_id, resource in state["resources"].items():
        if resource["created_by"] != "local platform":
            lines.append(f"    {logical_id:<26} {resource['physical_id']}")
    if stack.demo_key:
        lines += [
            "",
            f"  Demo API key (tenant {state['demo_tenant']}, every scope), also in {state['demo_key_file']}:",
            f"    {stack.demo_key}",
            f"  Try: curl -H 'Authorization: Bearer {stack.demo_key}' {state['api_url']}/v1/webhooks",
        ]
    lines += ["", f"  State: {stack.stack_file}", "  Ctrl-C stops everything."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    logging.getLogger("meshanics_local").propagate = False  # the stack's log file only, not the console
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stack = LocalPlatform(
        api_port=args.port,
        aws_port=args.aws_port,
        template=args.template,
        state_dir=args.state_dir,
        parameter_overrides=_pairs(args.parameter_overrides, "--parameter-overrides"),
        pool_sizes={k: int(v) for k, v in _pairs(args.pool_size, "--pool-size").items()},
        schedule_scale=args.schedule_scale,
    )
    print("starting the local platform ...", flush=True)
    try:
        stack.start()
    except Exception as error:
        print(f"the local platform could not start: {error}", file=sys.stderr)
        return 1
    try:
        os.environ.update(stack.parent_environment())
        print(summary(stack), flush=True)
        if args.ready_file:
            args.ready_file.parent.mkdir(parents=True, exist_ok=True)
            args.ready_file.touch()
        while not stopping.wait(0.5):
            pass
        print("stopping ...", flush=True)
    finally:
        stack.stop()
        if args.ready_file:
            args.ready_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
