"""`Idempotency-Key` on the routes that create: Powertools' idempotency utility over a DynamoDB table.

    app = ApiResolver(..., idempotency=IdempotentRequests.from_settings())

    @app.post("/v1/events", ..., responses=idempotency.documented(app.documented(201, 400, 413, 415, 422)))
    def write_events(body: Annotated[EventBody, Body()], idempotency_key: IdempotencyKey = None) -> EventWrittenPage:
        return EventWrittenPage(**app.once(idempotency_key, lambda: _write_events(body).model_dump(mode="json")))

A key is scoped to the tenant and the route (method and path): the same key from another tenant, or
on another route, is another request. The first successful answer is stored for 24 hours; the same
key with the same body (the JSON document, whatever its spacing or key order) gets that answer again
without the route running again; with another body, 422; while the first is still running, 409.
Failed requests are not stored: the client may retry them with the same key. A record in progress
expires when its invocation would have timed out, so a crash does not lock the key for a day.

What the table holds per key: a SHA-256 of (tenant, route, key), a SHA-256 of the body, and the
answer. The fields a route names in `sealed=` (a new webhook's secret) are sealed with the Sealer (KMS
envelope, bound to the tenant and the request) before the answer is stored, and unsealed when it is
replayed: the table holds no secret in the clear, and a sealed answer does not open for another
tenant or request. (Not the AWS managed table key alone: whoever may read the table could read the
secret then; and not left out of the answer: the client that lost the first answer needs it.)
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, cast

from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from meshanics.errors import Conflict, MeshanicsError
from meshanics_api.openapi import error

# Powertools' idempotency utility itself is imported on the first keyed request, not with this
# module: it would add about 15 ms to every cold start of the API function.
if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.idempotency.serialization.base import BaseIdempotencySerializer
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from meshanics.sealing import Sealer

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
EXPIRES_AFTER_SECONDS = 24 * 3600
# Printable ASCII; no space at either end (HTTP trims them, so such a key would not be what was sent).
KEY_PATTERN = r"^[!-~]([ -~]*[!-~])?$"
# The records' key prefix: stable across function names and deployments.
KEY_PREFIX = "meshanics-api"

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        pattern=KEY_PATTERN,
        description=(
            "Makes a retry safe: the same key with the same body within 24 hours answers the first "
            "response again (same ids, sequences and status) without writing again. Scoped to the "
            "tenant and the route. 1-255 printable ASCII characters, e.g. a UUID."
        ),
    ),
]


class KeyReused(MeshanicsError):
    status = 422
    code = "idempotency_key_reused"


def documented(responses: dict[int, OpenAPIResponse]) -> dict[int, OpenAPIResponse]:
    """A route's responses with what Idempotency-Key adds: 409 while the first request runs, 422 for
    the key reused with another body."""
    notes = {
        409: "a request with the same Idempotency-Key is still in progress (code idempotency_in_progress)",
        422: "the Idempotency-Key was used with a different body (code idempotency_key_reused)",
    }
    documented = dict(responses)
    for status, note in notes.items():
        given = responses.get(status)
        described = f"{given['description']}; or {note}" if given else note[:1].upper() + note[1:]
        documented[status] = error(described)
    return documented


@dataclass(frozen=True)
class Request:
    """What identifies a request under a key, and what must match when the key comes again."""

    tenant_id: str
    route: str  # "POST /v1/events"
    key: str
    body: Any  # the JSON body as sent

    @property
    def scope(self) -> dict[str, str]:
        return {"tenant": self.tenant_id, "route": self.route, "key": self.key}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.scope, sort_keys=True).encode()).hexdigest()


class _SealedFields:
    """Seals the named fields of an answer before Powertools stores it; unseals them on replay.

    Powertools' output serializer (to_dict/from_dict); not a subclass of its base, which would import
    the utility with this module."""

    def __init__(self, sealer: Sealer, request: Request, fields: Collection[str]) -> None:
        self._sealer = sealer
        self._request = request
        self._fields = frozenset(fields)

    def _context(self, name: str) -> dict[str, str]:
        return {
            "tenant": self._request.tenant_id,
            "request": self._request.digest,
            "field": name,
            "purpose": "idempotent-response",
        }

    def to_dict(self, data: Any) -> dict[str, Any]:
        stored = dict(data)
        for name in self._fields & stored.keys():
            sealed = self._sealer.seal(stored[name], self._context(name))
            stored[name] = {"sealed": base64.b64encode(sealed).decode()}
        return stored

    def from_dict(self, data: dict[str, Any]) -> dict[str, Any]:
        answer = dict(data)
        for name in self._fields & answer.keys():
            answer[name] = self._sealer.unseal(base64.b64decode(answer[name]["sealed"]), self._context(name))
        return answer


class IdempotentRequests:
    """Runs a route's work once per (tenant, route, key); see the module's docstring."""

    header = HEADER

    def __init__(
        self,
        table_name: Callable[[], str],
        dynamodb: Callable[[], Any],
        sealer: Callable[[], Sealer],
        *,
        expires_after_seconds: int = EXPIRES_AFTER_SECONDS,
    ) -> None:
        self._table_name = table_name
        self._dynamodb = dynamodb
        self._sealer = sealer
        self._expires_after_seconds = expires_after_seconds
        self._persistence: DynamoDBPersistenceLayer | None = None

    @classmethod
    def from_settings(cls) -> IdempotentRequests:
        """The table the template declares (IDEMPOTENCY_TABLE), read on the first keyed request."""
        from meshanics import services
        from meshanics.config import settings

        return cls(lambda: settings().idempotency_table, services.dynamodb, services.sealer)

    def _store(self) -> DynamoDBPersistenceLayer:
        # One per process: each construction registers a user-agent hook on the shared client.
        if self._persistence is None:
            from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

            self._persistence = DynamoDBPersistenceLayer(
                table_name=self._table_name(), boto3_client=self._dynamodb(), expiry_attr="expires_at"
            )
        return self._persistence

    def run(
        self,
        request: Request,
        produce: Callable[[], Mapping[str, Any]],
        *,
        sealed: Collection[str] = (),
        context: LambdaContext | None = None,
    ) -> dict[str, Any]:
        """The answer to `request`: `produce()`'s, or the one stored for its key (409/422 as above)."""
        from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
        from aws_lambda_powertools.utilities.idempotency.exceptions import (
            IdempotencyAlreadyInProgressError,
            IdempotencyValidationError,
        )

        config = IdempotencyConfig(
            event_key_jmespath="request",
            payload_validation_jmespath="body",
            expires_after_seconds=self._expires_after_seconds,
            hash_function="sha256",
            lambda_context=context,
        )

        def answer(payload: dict[str, Any]) -> dict[str, Any]:
            return dict(produce())

        once = idempotent_function(
            answer,
            data_keyword_argument="payload",
            persistence_store=self._store(),
            config=config,
            output_serializer=cast("BaseIdempotencySerializer", _SealedFields(self._sealer(), request, sealed)),
            key_prefix=KEY_PREFIX,
        )
        try:
            result: dict[str, Any] = once(payload={"request": request.scope, "body": request.body})
        except IdempotencyValidationError:
            raise KeyReused(
                f"this {HEADER} was used with a different request body; use a new key for a new request",
                field=HEADER,
            ) from None
        except IdempotencyAlreadyInProgressError:
            raise Conflict(
                f"a request with this {HEADER} is still in progress; retry once it has answered",
                code="idempotency_in_progress",
                field=HEADER,
            ) from None
        return result
