"""API Gateway Lambda authorizer (REQUEST): verifies an API key and passes its tenant and scopes.

Accepts `Authorization: Bearer <key>` and `Basic base64(<any user>:<key>)` (what registry clients
send). A bad key is a 401 ("Unauthorized"); scopes are checked per route by the functions behind.
The allow policy covers the whole API because API Gateway caches it per key for every route.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from meshanics import apikeys, services
from meshanics.errors import Unauthenticated

logger = Logger()
keys = services.api_keys()


def _api_wide(method_arn: str) -> str:
    # arn:aws:execute-api:region:account:api-id/stage/METHOD/path -> .../api-id/stage/*/*
    prefix, _, rest = method_arn.partition("/")
    stage = rest.split("/", 1)[0]
    return f"{prefix}/{stage}/*/*"


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    try:
        key = keys.authenticate(apikeys.key_from_authorization(headers.get("authorization")))
    except Unauthenticated as refused:
        logger.info("authentication refused", extra={"reason": refused.message})
        raise Exception("Unauthorized") from None
    return {
        "principalId": f"{key.tenant_id}/{key.key_id}",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": _api_wide(event["methodArn"])}
            ],
        },
        "context": {"tenant_id": key.tenant_id, "scopes": " ".join(key.scopes), "key_id": key.key_id},
    }
