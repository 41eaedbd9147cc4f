"""`meshanics`: the operator's command line, for the local platform or a deployed one.

    meshanics keys create --tenant acme --scope integrations:read --scope events:write
    meshanics keys list --tenant acme
    meshanics keys revoke --tenant acme <key-id>
    meshanics replay sweep
    meshanics replay delivery --tenant acme <delivery-id>
    meshanics registries list --tenant acme
    meshanics registries approve --tenant acme <registry-id>
    meshanics registries remove --tenant acme <registry-id>
    meshanics replays list --tenant acme [--webhook <webhook-id>]
    meshanics replays cancel --tenant acme <replay-id>

Target: `--stack-name NAME` (a deployed stack; AWS credentials and region from the environment),
or the local platform started by `make run` (read from .local/stack.json), which is the default.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LOCAL_STATE = Path(".local") / "stack.json"
# Stack outputs / logical ids -> the environment variables the core reads.
RESOURCE_ENV = {
    "IntegrationsTable": "INTEGRATIONS_TABLE",
    "AuditLogTable": "AUDIT_TABLE",
    "DeliveryQueue": "DELIVERY_QUEUE_URL",
    "DeliveryDeadLetterQueue": "DELIVERY_DLQ_URL",
    "SealingKey": "SEALING_KEY_ID",
    "ReplayQueue": "REPLAY_QUEUE_URL",
}
# The functions' variables a local run passes on as they are (for a stack, derived below).
LOCAL_ENV = ("REPLAY_SCHEDULE_GROUP",)
# Template parameters the core reads from the functions' environment when it writes: the CLI's audit
# events (registry approvals and removals) land in the same shards, with the same retention, as theirs.
PARAMETER_ENV = {
    "AuditShards": "AUDIT_SHARDS",
    "AuditRetentionDays": "AUDIT_RETENTION_DAYS",
    "MaxAuditRecordBytes": "MAX_AUDIT_RECORD_BYTES",
    "SubscriptionCacheMs": "SUBSCRIPTION_CACHE_MS",
    "DeliveryRetentionDays": "DELIVERY_RETENTION_DAYS",
}
# Who the audit log and `approved_by` name for what the CLI does.
ACTOR = "operator:cli"


class CliError(Exception):
    pass


def _find_local_state() -> Path:
    for folder in (Path.cwd(), *Path.cwd().parents):
        candidate = folder / LOCAL_STATE
        if candidate.is_file():
            return candidate
    raise CliError("no local platform found (.local/stack.json); start it with `make run`, or pass --stack-name")


def _target_local() -> dict[str, str]:
    state = json.loads(_find_local_state().read_text())
    env = {
        "AWS_ENDPOINT_URL": state["aws_endpoint"],
        "AWS_DEFAULT_REGION": state.get("region", "us-east-1"),
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    }
    wanted = {*RESOURCE_ENV.values(), *PARAMETER_ENV.values(), *LOCAL_ENV}
    env.update({k: v for k, v in state.get("environment", {}).items() if k in wanted})
    return env


def _target_stack(stack_name: str) -> dict[str, str]:
    import boto3

    cfn = boto3.client("cloudformation")
    env: dict[str, str] = {}
    try:
        for logical, variable in RESOURCE_ENV.items():
            resource = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical)
            physical = resource["StackResourceDetail"]["PhysicalResourceId"]
            env[variable] = physical
        (stack,) = cfn.describe_stacks(StackName=stack_name)["Stacks"]
        for parameter in stack.get("Parameters", []):
            if parameter["ParameterKey"] in PARAMETER_ENV:
                env[PARAMETER_ENV[parameter["ParameterKey"]]] = parameter["ParameterValue"]
            if parameter["ParameterKey"] == "Environment":  # named in the template: meshanics-replays-<env>
                env["REPLAY_SCHEDULE_GROUP"] = f"meshanics-replays-{parameter['ParameterValue']}"
    except Exception as error:  # botocore errors carry their own clear message
        raise CliError(f"could not read stack {stack_name}: {error}") from None
    return env


def _configure(args: argparse.Namespace) -> None:
    env = _target_stack(args.stack_name) if args.stack_name else _target_local()
    os.environ.update(env)
    from meshanics import services

    services.reset()


def _keys_create(args: argparse.Namespace) -> int:
    from meshanics import services

    key, _ = services.api_keys().create(args.tenant, args.scope, name=args.name or "")
    print(key)
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    from meshanics import services

    keys = [k.public() for k in services.api_keys().for_tenant(args.tenant)]
    if args.json:
        print(json.dumps(keys, indent=2))
        return 0
    print(f"{'KEY ID':<18} {'CREATED':<26} {'REVOKED':<26} SCOPES")
    for k in keys:
        print(f"{k['key_id']:<18} {k['created_at']:<26} {k['revoked_at'] or '-':<26} {' '.join(k['scopes'])}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    from meshanics import services

    revoked = services.api_keys().revoke(args.tenant, args.key_id)
    print(f"revoked {revoked.key_id} at {revoked.revoked_at}", file=sys.stderr)
    return 0


def _replay_sweep(args: argparse.Namespace) -> int:
    from meshanics import services

    print(json.dumps(services.replayer().run(), default=lambda r: r.as_dict(), indent=2))
    return 0


def _replay_delivery(args: argparse.Namespace) -> int:
    from meshanics import services

    delivery = services.webhooks().replay(args.tenant, ACTOR, args.delivery_id)
    print(json.dumps(delivery.public(), indent=2))
    return 0


def _registries_list(args: argparse.Namespace) -> int:
    from meshanics import services
    from meshanics.config import settings

    registries = services.registries()
    connections: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = registries.page(args.tenant, limit=settings().limits.max_page_size, cursor=cursor)
        connections += [c.public() for c in page if args.status in (None, c.status)]
        if cursor is None:
            break
    if args.json:
        print(json.dumps(connections, indent=2))
        return 0
    print(f"{'REGISTRY ID':<28} {'NAME':<24} {'STATUS':<9} {'CREATED':<26} UPSTREAM")
    for c in connections:
        print(f"{c['id']:<28} {c['name']:<24} {c['status']:<9} {c['created_at']:<26} {c['upstream_url']}")
    return 0


def _registries_approve(args: argparse.Namespace) -> int:
    from meshanics import services

    approved = services.registries().approve(args.tenant, ACTOR, args.registry_id)
    print(json.dumps(approved.public(), indent=2))
    return 0


def _registries_remove(args: argparse.Namespace) -> int:
    from meshanics import services

    services.registries().remove(args.tenant, ACTOR, args.registry_id)
    print(f"removed {args.registry_id}", file=sys.stderr)
    return 0


def _replays_list(args: argparse.Namespace) -> int:
    from meshanics import services
    from meshanics.config import settings

    recovery = services.endpoint_recovery()
    replays: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page, cursor = recovery.page(
            args.tenant, webhook_id=args.webhook, limit=settings().limits.max_page_size, cursor=cursor
        )
        replays += [r.public() for r in page]
        if cursor is None or len(replays) >= args.limit:
            break
    replays = replays[: args.limit]
    if args.json:
        print(json.dumps(replays, indent=2))
        return 0
    counts = f"{'QUEUED':>6} {'SENT':>6} {'FAILED':>6} {'SKIPPED':>7}"
    print(f"{'REPLAY ID':<28} {'WEBHOOK ID':<28} {'STATUS':<10} {counts}  WINDOW")
    for r in replays:
        c = r["counts"]
        print(
            f"{r['id']:<28} {r['webhook_id']:<28} {r['status']:<10} {c['queued']:>6} {c['sent']:>6} "
            f"{c['failed']:>6} {c['skipped']:>7}  {r['since']} .. {r['until']}"
        )
    return 0


def _replays_cancel(args: argparse.Namespace) -> int:
    from meshanics import services

    cancelled = services.endpoint_recovery().cancel(args.tenant, args.replay_id)
    print(json.dumps(cancelled.public(), indent=2))
    return 0


def _parser() -> argparse.ArgumentParser:
    from meshanics.apikeys import SCOPES

    parser = argparse.ArgumentParser(prog="meshanics", description="Operate Meshanics Integrations.")
    parser.add_argument("--stack-name", help="a deployed stack (default: the local platform of `make run`)")
    commands = parser.add_subparsers(dest="command", required=True)

    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown only this once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--scope", action="append", required=True, choices=SCOPES)
    create.add_argument("--name", help="a label to recognise the key by")
    create.set_defaults(run=_keys_create)
    listing = keys.add_parser("list", help="list a tenant's keys (never the keys themselves)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_keys_list)
    revoke = keys.add_parser("revoke", help="revoke a key")
    revoke.add_argument("--tenant", required=True)
    revoke.add_argument("key_id")
    revoke.set_defaults(run=_keys_revoke)

    replay = commands.add_parser("replay", help="replays").add_subparsers(dest="action", required=True)
    sweep = replay.add_parser("sweep", help="run the scheduled sweep now (unsent jobs, dead letters)")
    sweep.set_defaults(run=_replay_sweep)
    one = replay.add_parser("delivery", help="replay one failed delivery")
    one.add_argument("--tenant", required=True)
    one.add_argument("delivery_id")
    one.set_defaults(run=_replay_delivery)

    registries = commands.add_parser("registries", help="registry connections (pull-through upstreams)")
    registry = registries.add_subparsers(dest="action", required=True)
    listing = registry.add_parser("list", help="list a tenant's connections (never their credentials)")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--status", choices=("pending", "approved"), help="only connections in this state")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_registries_list)
    approve = registry.add_parser("approve", help="approve a pending connection (devices may pull through it)")
    approve.add_argument("--tenant", required=True)
    approve.add_argument("registry_id")
    approve.set_defaults(run=_registries_approve)
    remove = registry.add_parser("remove", help="remove a connection")
    remove.add_argument("--tenant", required=True)
    remove.add_argument("registry_id")
    remove.set_defaults(run=_registries_remove)

    replays = commands.add_parser("replays", help="recoveries (POST /v1/webhooks/{id}/recover) and their progress")
    replay_actions = replays.add_subparsers(dest="action", required=True)
    listing = replay_actions.add_parser("list", help="list a tenant's replays, newest first")
    listing.add_argument("--tenant", required=True)
    listing.add_argument("--webhook", help="only this endpoint's")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_replays_list)
    cancel = replay_actions.add_parser("cancel", help="cancel a scheduled, queued or running replay")
    cancel.add_argument("--tenant", required=True)
    cancel.add_argument("replay_id")
    cancel.set_defaults(run=_replays_cancel)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from meshanics.errors import MeshanicsError

    try:
        _configure(args)
        result: Any = args.run(args)
        return int(result)
    except (CliError, MeshanicsError) as error:
        print(f"meshanics: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
