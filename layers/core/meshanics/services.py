"""The composition root: core services built once per process from the settings.

Imports are local to each factory so a function pays only for the modules it uses at cold start.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from meshanics import aws
from meshanics.config import settings

if TYPE_CHECKING:
    from meshanics.audit import AuditLog
    from meshanics.deliver import Deliverer
    from meshanics.endpoint_recovery import EndpointRecovery
    from meshanics.fanout import FanOut
    from meshanics.health import HealthReader, HealthRecorder
    from meshanics.jobqueue import DeadLetters, DeliveryQueue
    from meshanics.operational import OperationalEvents
    from meshanics.recovery import FanoutRecovery
    from meshanics.registry.connections import RegistryService
    from meshanics.registry.facade import PullFacade
    from meshanics.replay import Replayer
    from meshanics.sealing import Sealer
    from meshanics.store.apikeys import ApiKeyStore
    from meshanics.store.audit import AuditTable
    from meshanics.store.deliveries import DeliveryStore
    from meshanics.store.endpoints import EndpointStore
    from meshanics.store.health import HealthStore
    from meshanics.store.tenants import TenantCounters
    from meshanics.webhooks import WebhookService


def dynamodb() -> Any:
    return aws.client("dynamodb")


# -- stores ---------------------------------------------------------------------------------------
@cache
def tenant_counters() -> TenantCounters:
    from meshanics.store.tenants import TenantCounters

    return TenantCounters(dynamodb, settings().integrations_table)


@cache
def audit_table() -> AuditTable:
    from meshanics.store.audit import AuditTable

    s = settings()
    return AuditTable(dynamodb, s.audit_table, shards=s.audit_shards, retention_days=s.audit_retention_days)


@cache
def endpoint_store() -> EndpointStore:
    from meshanics.store.endpoints import EndpointStore

    return EndpointStore(dynamodb, settings().integrations_table, tenant_counters())


@cache
def delivery_store() -> DeliveryStore:
    from meshanics.store.deliveries import DeliveryStore

    s = settings()
    return DeliveryStore(dynamodb, s.integrations_table, retention_days=s.delivery_retention_days)


@cache
def health_store() -> HealthStore:
    from meshanics.store.health import HealthStore

    return HealthStore(dynamodb, settings().integrations_table)


@cache
def api_keys() -> ApiKeyStore:
    from meshanics.store.apikeys import ApiKeyStore

    return ApiKeyStore(dynamodb, settings().integrations_table)


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


# -- use cases ------------------------------------------------------------------------------------
@cache
def audit_log() -> AuditLog:
    from meshanics.audit import AuditLog, Subscriptions

    s = settings()
    return AuditLog(
        table=audit_table(),
        counters=tenant_counters(),
        subscriptions=Subscriptions(endpoint_store(), cache_seconds=s.subscription_cache_seconds),
        max_record_bytes=s.limits.max_record_bytes,
    )


@cache
def operational_events() -> OperationalEvents:
    from meshanics.operational import OperationalEvents

    return OperationalEvents(endpoints=endpoint_store(), audit=audit_log())


def health_recorder() -> HealthRecorder:
    from meshanics.health import HealthRecorder

    return HealthRecorder(
        health_store(), switch=operational_events, disable_after_seconds=settings().endpoint_disable_after_seconds
    )


def health_reader() -> HealthReader:
    from meshanics.health import HealthReader

    return HealthReader(health_store())


def fanout() -> FanOut:
    from meshanics.fanout import FanOut

    return FanOut(delivery_queue())


@cache
def deliverer() -> Deliverer:
    from meshanics.deliver import Deliverer, HttpSender

    s = settings()
    return Deliverer(
        deliveries=delivery_store(),
        sealer=sealer(),
        queue=delivery_queue(),
        schedule=s.retry_schedule,
        sender=HttpSender(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout),
        attempt_deadline=s.delivery_deadline,
        concurrency=s.delivery_concurrency,
        health=health_recorder(),
        operational=operational_events,
    )


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
        health=health_reader(),
        recoveries=endpoint_recovery,
    )


def replayer() -> Replayer:
    from meshanics.replay import Replayer

    return Replayer(
        deliveries=delivery_store(),
        endpoints=endpoint_store(),
        audit=audit_table(),
        queue=delivery_queue(),
        dead_letters=dead_letters(),
    )


def fanout_recovery() -> FanoutRecovery:
    from meshanics.recovery import FailureQueue, FanoutRecovery

    queue = FailureQueue(lambda: aws.client("sqs"), settings().fanout_failure_queue_url)
    return FanoutRecovery(
        streams=lambda: aws.client("dynamodbstreams"), audit_log=audit_log(), fanout=fanout, requeue=queue.send
    )


@cache
def endpoint_recovery() -> EndpointRecovery:
    from meshanics.endpoint_recovery import EndpointRecovery, RecoverySchedules, RunQueue
    from meshanics.store.recoveries import RecoveryStore

    s = settings()

    def schedules() -> RecoverySchedules:
        return RecoverySchedules(
            lambda: aws.client("scheduler"), group=s.replay_schedule_group, target=lambda: s.replay_schedule_target
        )

    return EndpointRecovery(
        recoveries=RecoveryStore(dynamodb, s.integrations_table),
        endpoints=endpoint_store(),
        deliveries=delivery_store(),
        audit=audit_table(),
        queue=delivery_queue,
        runs=lambda: RunQueue(lambda: aws.client("sqs"), s.replay_queue_url),
        schedules=schedules,
        bounds=s.recovery_bounds,
    )


# -- registry pull-through ------------------------------------------------------------------------
@cache
def registries() -> RegistryService:
    from meshanics.registry.connections import RegistryService
    from meshanics.store.registries import RegistryStore

    s = settings()
    return RegistryService(
        store=RegistryStore(dynamodb, s.integrations_table, tenant_counters()),
        audit=audit_log(),
        sealer=sealer(),
        max_registries=s.limits.max_registries,
    )


@cache
def pull_facade() -> PullFacade:
    from meshanics.registry.cache import ArtifactCache
    from meshanics.registry.facade import PullFacade
    from meshanics.registry.settings import PullSettings
    from meshanics.registry.upstream import UpstreamClient
    from meshanics.store.leases import FillLeases
    from meshanics.store.pulls import PullRecords

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
        tenant_counters,
        audit_table,
        endpoint_store,
        delivery_store,
        api_keys,
        health_store,
        operational_events,
        delivery_queue,
        dead_letters,
        sealer,
        audit_log,
        deliverer,
        webhooks,
        endpoint_recovery,
        registries,
        pull_facade,
    ):
        factory.cache_clear()
    settings.cache_clear()
    aws.reset_clients()
