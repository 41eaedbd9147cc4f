"""The AWS emulation: moto in server mode on loopback, in a process of its own.

moto keeps its state in module-level backends. Running the server in a child process keeps that
state away from anything else in the parent (tests that use `moto.mock_aws` reset every backend
when they finish) and lets moto's request handling use a core of its own.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from meshanics_local.template import REGION

DUMMY_KEY = "local"  # moto accepts any credentials


def _lighten_moto() -> None:
    """Performance, same answers (and, at the end, one race of moto's streams closed): three of moto's
    paths walk a whole queue or table per call, which under a backlog makes each call cost the
    queue's depth or the table's size (and a batch of them its square). They are replaced by direct
    reads of what they need:

    * SQS checks a received message's retention by computing every attribute of its queue
      (approximate counts over all messages included), for each message it hands out;
    * SQS reads the queue's ContentBasedDeduplication the same way for each message it accepts;
    * a DynamoDB Query on a table's own key sorts every item of the table, then keeps one partition;
    * every request lists moto's package directory to find its service.
    """
    from moto.core.utils import unix_time
    from moto.dynamodb.models.table import Table
    from moto.sqs import models as moto_sqs
    from moto.sqs.models import Message, Queue, SQSBackend

    def retained(self: SQSBackend, queue_name: str, message: Message) -> bool:
        queue = self.get_queue(queue_name)
        retention = float(queue.message_retention_period)  # type: ignore[attr-defined]  # set from its attributes
        return retention + float(message.sent_timestamp or 0) / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = retained  # type: ignore[method-assign]

    # A queue's attributes include approximate message counts, computed over every message each time
    # they are read; a SendMessageBatch reads them once per message. Within one send call they are
    # computed once (the counts are approximate on AWS too); outside one, always afresh.
    computed = Queue.attributes.fget  # type: ignore[attr-defined]
    sending = threading.local()

    def attributes(self: Queue) -> dict[str, Any]:
        memo: dict[int, dict[str, Any]] | None = getattr(sending, "memo", None)
        if memo is None:
            return computed(self)  # type: ignore[no-any-return]
        if id(self) not in memo:
            memo[id(self)] = computed(self)
        return dict(memo[id(self)])

    def once_per_call(send: Any) -> Any:
        def wrapped(self: SQSBackend, *args: Any, **kwargs: Any) -> Any:
            outermost = getattr(sending, "memo", None) is None
            if outermost:
                sending.memo = {}
            try:
                return send(self, *args, **kwargs)
            finally:
                if outermost:
                    sending.memo = None

        return wrapped

    Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
    SQSBackend.send_message = once_per_call(SQSBackend.send_message)  # type: ignore[method-assign]
    SQSBackend.send_message_batch = once_per_call(SQSBackend.send_message_batch)  # type: ignore[method-assign]

    original_query = Table.query

    class _OnePartition:
        """The table as Query's base-table path sees it: all_items() is only the asked partition."""

        def __init__(self, table: Table, hash_key: Any) -> None:
            self._table = table
            self._hash_key = hash_key

        def __getattr__(self, name: str) -> Any:
            return getattr(self._table, name)

        def all_items(self) -> list[Any]:
            bucket = self._table.items.get(self._hash_key)
            if bucket is None:
                return []
            return list(bucket.values()) if self._table.range_key_attr else [bucket]

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name or hash_key is None:
            return original_query(self, hash_key, *args, **kwargs)
        return original_query(_OnePartition(self, hash_key), hash_key, *args, **kwargs)  # type: ignore[arg-type]

    Table.query = query  # type: ignore[method-assign]

    # Every request finds its service by listing moto's package directory (under a global lock), and
    # every SQS visibility check reads the clock through a datetime round trip: both answer the same
    # from a memo and from time.time().
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    find_backend = DomainDispatcherApplication.get_backend_for_host
    backends: dict[str | None, Any] = {}

    def backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
        if host not in backends:
            backends[host] = find_backend(self, host)
        return backends[host]

    DomainDispatcherApplication.get_backend_for_host = backend_for_host  # type: ignore[method-assign]
    utc_millis = moto_sqs.unix_time_millis  # type: ignore[attr-defined]

    def now_millis(moment: Any = None) -> float:
        return time.time() * 1000 if moment is None else float(utc_millis(moment))

    moto_sqs.unix_time_millis = now_millis  # type: ignore[attr-defined,assignment]

    # Not performance: a stream record's sequence number is its shard's length when it is added, and
    # the server is threaded, so two writes at once could take the same number; a consumer that keys
    # a batch by sequence number (the fan-out handler) then keeps one of the two records and the
    # other event is never fanned out. DynamoDB's are unique: records are added one at a time.
    from moto.dynamodb.models.table import StreamShard

    add_record = StreamShard.add
    adding = threading.Lock()

    def add_one_at_a_time(self: StreamShard, old: Any, new: Any) -> None:
        with adding:
            add_record(self, old, new)

    StreamShard.add = add_one_at_a_time  # type: ignore[method-assign]


def _serve(port: int, conn: Connection, log_path: str) -> None:
    """Child process: run ThreadedMotoServer until the parent says stop (or goes away)."""
    from meshanics_local.workers import ignore_stop_signals

    ignore_stop_signals()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    _lighten_moto()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    try:
        server.start()
    except OSError as error:
        conn.send(("error", f"cannot listen on 127.0.0.1:{port}: {error}"))
        return
    conn.send(("ready", server.get_host_and_port()[1]))
    with contextlib.suppress(EOFError, OSError):
        conn.recv()
    server.stop()


class AwsServer:
    """moto on http://127.0.0.1:<port> (0 picks a free port)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self._requested_port = port
        self._log_path = log_path
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the child (moto imports take a moment; `wait_ready` collects the port)."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_serve, args=(self._requested_port, child, str(self._log_path)), name="moto", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent

    def wait_ready(self, timeout: float = 60.0) -> str:
        assert self._conn is not None
        if not self._conn.poll(timeout):
            raise RuntimeError(f"the AWS emulation did not start within {timeout:.0f}s (see {self._log_path})")
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"the AWS emulation exited while starting (see {self._log_path})") from None
        if status != "ready":
            raise RuntimeError(str(value))
        self.port = int(value)
        return self.url

    def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(2)
            self._process = None


def client(service: str, endpoint: str | None) -> Any:
    """A boto3 client for the local emulation, or for moto's mock in this process when `endpoint` is None
    (its own session: creation is not thread-safe)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=REGION)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)
    return session.client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]
