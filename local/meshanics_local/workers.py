"""Function workers: each function runs in its own processes, as Lambda runs it in its own sandboxes.

A worker is a spawned process with the function's environment and `sys.path` = [code directory,
layer directories, the interpreter's own libraries]. It imports the handler once (the cold start)
and then serves invocations sent over a pipe, one at a time. An invocation that runs past the
function's Timeout kills the worker (a fresh one replaces it) and counts as a function error.

This module is imported by every worker before the handler: it must stay light (standard library).
Before the handler, each worker also wraps botocore's HTTP send (`awscalls`): its AWS requests are
metered and reported with each invocation, and faults are injected when the function's environment
carries a fault plan.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

INIT_TIMEOUT = 60.0  # generous: several workers import boto3 and Powertools at once on start
MAX_RESPONSE_BYTES = 6 * 1024 * 1024  # Lambda's synchronous response limit


@dataclass(frozen=True)
class FunctionSpec:
    """What a worker needs to run one function (picklable)."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout: float
    memory_mb: int
    environment: Mapping[str, str]
    layer_dirs: tuple[Path, ...] = ()
    log_path: Path | None = None
    runtime: str = "python3"
    declared_environment: Mapping[str, str] = field(default_factory=dict)  # what the template sets

    @property
    def module_file(self) -> Path:
        module = self.handler.rsplit(".", 1)[0]
        return self.code_dir / (module.replace(".", "/") + ".py")

    @property
    def code_present(self) -> bool:
        return self.module_file.is_file()


@dataclass
class Invocation:
    """The outcome of one invocation: a JSON result, or a function error (Lambda's error shape)."""

    request_id: str
    result: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0
    cold_start: bool = False
    # The function's AWS requests during this invocation (see awscalls.CallMeter.take).
    aws: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def error_message(self) -> str:
        return str((self.error or {}).get("errorMessage", ""))


class LambdaContext:
    """The context object a Python handler receives (what Powertools reads from it)."""

    def __init__(self, spec: FunctionSpec, request_id: str, deadline: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = request_id
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = spec.environment.get("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        self.identity = None
        self.client_context = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def ignore_stop_signals() -> None:
    """Children leave Ctrl-C and SIGTERM sent to the process group to the parent, which stops them
    in order (a child whose parent is gone sees its pipe close and exits)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _error(error: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": error_type or type(error).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(error.__traceback__),
    }


def _python_path(spec: FunctionSpec) -> list[str]:
    """Code first, then layers, then only the interpreter's standard library and site-packages."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    runtime = [p for p in sys.path if p and any(os.path.realpath(p).startswith(x) for x in prefixes)]
    return [str(spec.code_dir), *(str(d) for d in spec.layer_dirs), *runtime]


def _load_handler(spec: FunctionSpec) -> tuple[Any, dict[str, Any] | None]:
    """The handler (the function's init), or its error as Lambda reports it."""
    module_name, _, function_name = spec.handler.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), function_name), None
    except Exception as error:
        traceback.print_exc()
        init_error = _error(error, "Runtime.ImportModuleError" if isinstance(error, ImportError) else None)
        return None, init_error | {"errorMessage": f"Init error in {spec.handler}: {error}"}


def _worker_main(spec: FunctionSpec, conn: Connection) -> None:
    """The worker process: set up the sandbox, import the handler, serve invocations."""
    ignore_stop_signals()
    if spec.log_path is not None:
        log = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.clear()
    os.environ.update(spec.environment)
    os.chdir(spec.code_dir)
    sys.path[:] = _python_path(spec)
    from meshanics_local import awscalls  # meters AWS calls; injects faults if the spec asks

    awscalls.install(awscalls.FaultPlan.from_env(os.environ.get(awscalls.ENV)))

    started = time.perf_counter()
    handler, init_error = _load_handler(spec)
    init_ms = (time.perf_counter() - started) * 1000
    conn.send(("ready", init_error))
    first = True
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if message is None:
            return
        request_id, event, deadline = message
        print(f"START RequestId: {request_id} Version: $LATEST", flush=True)
        started = time.perf_counter()
        if handler is None:  # Lambda re-runs a failed init on the next invocation
            handler, init_error = _load_handler(spec)
        if handler is None:
            reply: tuple[str, Any] = ("error", init_error)
        else:
            try:
                result = handler(event, LambdaContext(spec, request_id, deadline))
                reply = ("ok", json.dumps(result))
            except Exception as error:
                reply = ("error", _error(error))
                print(f"[ERROR] {type(error).__name__}: {error}", flush=True)
                traceback.print_exc()
        duration = (time.perf_counter() - started) * 1000
        init = f"\tInit Duration: {init_ms:.2f} ms" if first else ""
        print(f"END RequestId: {request_id}", flush=True)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {duration:.2f} ms\tMemory Size: {spec.memory_mb} MB{init}",
            flush=True,
        )
        first = False
        try:
            conn.send((*reply, awscalls.METER.take()))
        except (BrokenPipeError, OSError):
            return


@dataclass
class _Worker:
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: bool = False
    invocations: int = 0
    busy: bool = False


@dataclass
class FunctionPool:
    """A small pool of workers for one function; `invoke` blocks until a worker is free."""

    spec: FunctionSpec
    size: int = 1
    _idle: queue.Queue[_Worker] = field(default_factory=queue.Queue, init=False)
    _all: list[_Worker] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _start_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _stopped: bool = field(default=False, init=False)

    def start(self) -> None:
        """Spawn the workers; they import the handler in the background."""
        if not self.spec.code_present:
            return
        for _ in range(self.size):
            self._idle.put(self._spawn())

    def _spawn(self) -> _Worker:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main, args=(self.spec, child), name=f"lambda:{self.spec.logical_id}", daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        with self._lock:
            self._all.append(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        with contextlib.suppress(OSError):
            worker.conn.close()
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(2)

    def _replace(self, worker: _Worker) -> None:
        self._retire(worker)
        if not self._stopped:
            self._idle.put(self._spawn())

    def _take(self) -> _Worker | None:
        with self._start_lock:  # code written after the stack started: its workers spawn on first use
            if not self._all and not self._stopped:
                self.start()
        while not self._stopped:
            try:
                return self._idle.get(timeout=0.25)
            except queue.Empty:
                continue
        return None

    def invoke(self, event: Any, *, timeout: float | None = None, request_id: str | None = None) -> Invocation:
        """Invoke once; `timeout` (default the function's) bounds the handler's run time."""
        request_id = request_id or str(uuid.uuid4())

        def failed(kind: str, message: str, **details: Any) -> Invocation:
            return Invocation(request_id, error={"errorMessage": message, "errorType": kind}, **details)

        if not self.spec.code_present:
            module = self.spec.handler.rsplit(".", 1)[0]
            missing = f"Unable to import module '{module}': {self.spec.module_file} does not exist"
            return failed("Runtime.ImportModuleError", missing)
        limit = self.spec.timeout if timeout is None else min(timeout, self.spec.timeout)
        worker = self._take()
        if worker is None:
            return failed("Stopped", "the local platform is stopping")
        cold = not worker.ready
        worker.busy = True
        try:
            if not worker.ready:
                if not worker.conn.poll(INIT_TIMEOUT):
                    raise TimeoutError("init")
                worker.conn.recv()  # ("ready", init_error): init errors surface on each invocation
                worker.ready = True
            started = time.perf_counter()
            worker.conn.send((request_id, event, time.time() + limit))
            if not worker.conn.poll(limit):
                self._replace(worker)
                elapsed = time.perf_counter() - started
                at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                message = f"{at} {request_id} Task timed out after {elapsed:.2f} seconds"
                return failed("Sandbox.Timedout", message, duration_ms=elapsed * 1000, cold_start=cold)
            status, payload, aws = worker.conn.recv()
            duration = (time.perf_counter() - started) * 1000
        except (EOFError, OSError, TimeoutError) as failure:
            self._replace(worker)
            reason = "did not finish its init" if isinstance(failure, TimeoutError) else "exited"
            return failed("Runtime.ExitError", f"the function's runtime {reason}", cold_start=cold)
        worker.invocations += 1
        worker.busy = False
        self._idle.put(worker)
        if status == "ok" and len(payload) > MAX_RESPONSE_BYTES:
            too_large = f"Response payload size ({len(payload)} bytes) exceeded maximum allowed payload size "
            too_large += f"({MAX_RESPONSE_BYTES} bytes)."
            return failed("Function.ResponseSizeTooLarge", too_large, duration_ms=duration, cold_start=cold)
        if status == "ok":
            return Invocation(request_id, result=json.loads(payload), duration_ms=duration, cold_start=cold, aws=aws)
        error = dict(payload or {})
        error["requestId"] = request_id
        return Invocation(request_id, error=error, duration_ms=duration, cold_start=cold, aws=aws)

    def kill_busy(self, choose: Callable[[Sequence[_Worker]], _Worker] | None = None) -> bool:
        """SIGKILL a worker in the middle of an invocation, as a crashed sandbox (fault injection).

        The invocation fails with Runtime.ExitError and a fresh worker takes the dead one's place.
        """
        with self._lock:
            busy = [w for w in self._all if w.busy and w.ready and w.process.is_alive()]
        if not busy:
            return False
        victim = choose(busy) if choose else busy[0]
        victim.process.kill()
        return True

    def request_stop(self) -> None:
        """Ask every worker to exit after its current invocation (see `finish`)."""
        self._stopped = True
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.conn.send(None)

    def finish(self, deadline: float) -> None:
        """Wait for the workers until `deadline` (time.monotonic()), then kill what is left."""
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            self._retire(worker)

    def stop(self) -> None:
        self.request_stop()
        self.finish(time.monotonic() + 1)
