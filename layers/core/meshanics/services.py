"""The composition root: core services built once per process from the settings.

Imports are local to each factory so a function pays only for the modules it uses at cold start.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from meshanics import aws
from meshanics.config import settings

if TYPE_CHECKING:
    from meshanics.apikeys import ApiKeyStore
    from meshanics.audit import AuditLog
    from meshanics.deliveries import DeliveryStore
    from meshanics.delivery import Deliverer
    from meshanics.endpoints import EndpointStore
    from meshanics.fanout import FanOut
    from meshanics.jobqueue import DeadLetters, DeliveryQueue
    from meshanics.recovery import FanoutRecovery
    from meshanics.replay import Replayer
    from meshanics.sealing import Sealer
    from meshanics.webhooks import WebhookService


def dynamodb() -> Any:
    return aws.client("dynamodb")


@cache
def audit_log() -> AuditLog:
    from meshanics.audit import AuditLog

    s = settings()
    return AuditLog(
        dynamodb,
        audit_table=s.audit_table,
        integrations_table=s.integrations_table,
        max_record_bytes=s.limits.max_record_bytes,
        retention_days=s.audit_retention_days,
    )


@cache
def endpoint_store() -> EndpointStore:
    from meshanics.endpoints import EndpointStore

    return EndpointStore(dynamodb, settings().integrations_table)


@cache
def delivery_store() -> DeliveryStore:
    from meshanics.deliveries import DeliveryStore

    s = settings()
    return DeliveryStore(dynamodb, s.integrations_table, retention_days=s.delivery_retention_days)


@cache
def delivery_queue() -> DeliveryQueue:
    from meshanics.jobqueue import DeliveryQueue

    return DeliveryQueue(lambda: aws.client("sqs"), settings().delivery_queue_url)


@cache
def dead_letters() -> DeadLetters:
    from meshanics.jobqueue import DeadLetters

    return DeadLetters(lambda: aws.client("sqs"), settings().delivery_dlq_url)


@cache
def sealer() -> Sealer:
    from meshanics.sealing import Sealer

    return Sealer(lambda: aws.client("kms"), settings().sealing_key_id)


def fanout() -> FanOut:
    """A fan-out for one batch (its subscription lookups are cached for that batch only)."""
    from meshanics.fanout import FanOut

    return FanOut(endpoint_store(), delivery_store(), delivery_queue())


@cache
def deliverer() -> Deliverer:
    from meshanics.delivery import Deliverer, HttpSender

    s = settings()
    return Deliverer(
        endpoints=endpoint_store(),
        deliveries=delivery_store(),
        sealer=sealer(),
        queue=delivery_queue(),
        schedule=s.retry_schedule,
        sender=HttpSender(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout),
        attempt_deadline=s.delivery_deadline,
        concurrency=s.delivery_concurrency,
    )


# -- registry pull-through ------------------------------------------------------------------------
if TYPE_CHECKING:
    from meshanics.registry.connections import RegistryService
    from meshanics.registry.facade import PullFacade


@cache
def registries() -> RegistryService:
    from meshanics.registry.connections import RegistryService, RegistryStore

    s = settings()
    return RegistryService(
        store=RegistryStore(dynamodb, s.integrations_table),
        audit=audit_log(),
        sealer=sealer(),
        max_registries=s.limits.max_registries,
    )


@cache
def pull_facade() -> PullFacade:
    from meshanics.registry.cache import ArtifactCache, FillLeases
    from meshanics.registry.facade import PullFacade
    from meshanics.registry.pulls import PullRecords
    from meshanics.registry.settings import PullSettings
    from meshanics.registry.upstream import UpstreamClient

    s = settings()
    pull = PullSettings.from_env(s.env)
    return PullFacade(
        registries=registries(),
        records=PullRecords(dynamodb, s.integrations_table, retention_days=pull.cache_expiry_days),
        cache=ArtifactCache(s.artifact_bucket, presign_ttl=pull.presigned_url_ttl),
        leases=FillLeases(dynamodb, s.integrations_table),
        upstream=UpstreamClient(connect_timeout=pull.connect_timeout, read_timeout=pull.read_timeout),
        audit=audit_log(),
        settings=pull,
    )


def reset() -> None:
    """Forget every cached service and client (tests re-point the environment between cases)."""
    for factory in (
        webhooks,
        api_keys,
        audit_log,
        endpoint_store,
        delivery_store,
        delivery_queue,
        dead_letters,
        sealer,
        deliverer,
        registries,
        pull_facade,
    ):
        factory.cache_clear()
    settings.cache_clear()
    aws.reset_clients()


@cache
def api_keys() -> ApiKeyStore:
    from meshanics.apikeys import ApiKeyStore

    return ApiKeyStore(dynamodb, settings().integrations_table)


@cache
def webhooks() -> WebhookService:
    from meshanics.webhooks import WebhookService

    s = settings()
    return WebhookService(
        endpoints=endpoint_store(),
        deliveries=delivery_store(),
        audit=audit_log(),
        sealer=sealer(),
        deliverer=deliverer,
        queue=delivery_queue,
        limits=s.limits,
        rotation_overlap=s.rotation_overlap_seconds,
    )


def fanout_recovery() -> FanoutRecovery:
    from meshanics.recovery import FailureQueue, FanoutRecovery

    queue = FailureQueue(lambda: aws.client("sqs"), settings().fanout_failure_queue_url)
    return FanoutRecovery(
        streams=lambda: aws.client("dynamodbstreams"), audit_log=audit_log(), fanout=fanout, requeue=queue.send
    )


def replayer() -> Replayer:
    from meshanics.replay import Replayer

    return Replayer(
        deliveries=delivery_store(),
        endpoints=endpoint_store(),
        queue=delivery_queue(),
        dead_letters=dead_letters(),
    )
