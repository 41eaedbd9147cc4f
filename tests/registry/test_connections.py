"""Registry connections through the API door: approval, scopes, sealing, limits, egress, audit."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from meshanics import services
from meshanics.model import AuditRecord
from tests.registry.conftest import DEVICE, OPERATOR, READER, Door

BASIC = {"type": "basic", "username": "robot", "password": "s3cret-password-value"}
TOKEN = {"type": "token", "token": "tok-abcdef0123456789"}


def create(door: Door, *, name: str = "corp", tenant: str = "acme", **fields: Any) -> Any:
    body = {"name": name, "upstream_url": "https://registry.example.com", "credentials": BASIC} | fields
    return door.call("POST", "/v1/registries", tenant=tenant, scopes=OPERATOR, body=body)


def events(tenant: str) -> list[AuditRecord]:
    return services.audit_table().of_tenant(tenant)


@pytest.fixture(autouse=True)
def _public_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """registry.example.com resolves to a public address (no network needed)."""
    import socket

    real = socket.getaddrinfo

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "registry.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port or 443))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


def test_connect_is_pending_and_never_returns_credentials(door: Door) -> None:
    created = create(door)
    assert created.status == 201, created.json
    body = created.json
    assert body["status"] == "pending"
    assert body["auth_type"] == "basic"
    assert body["username"] == "robot"
    assert body["upstream_url"] == "https://registry.example.com"
    assert body["approved_at"] is None
    assert "password" not in created.body.decode() and BASIC["password"] not in created.body.decode()
    listed = door.call("GET", "/v1/registries", scopes=READER)
    one = door.call("GET", f"/v1/registries/{body['id']}", scopes=READER)
    for answer in (listed, one):
        assert answer.status == 200
        assert BASIC["password"] not in answer.body.decode()
    assert [r["id"] for r in listed.json["items"]] == [body["id"]]
    assert one.json == body


def test_credentials_are_sealed_at_rest_and_bound_to_the_connection(door: Door, aws: dict[str, str]) -> None:
    created = create(door, credentials=TOKEN).json
    items = boto3.client("dynamodb").scan(TableName=aws["INTEGRATIONS_TABLE"])["Items"]
    assert TOKEN["token"] not in repr(items)
    connection = services.registries().get("acme", created["id"])
    assert services.registries().credentials(connection).secret == TOKEN["token"]
    # Sealed for this tenant and connection: moved to another, it does not open.
    from dataclasses import replace

    with pytest.raises(Exception):  # noqa: B017  # KMS refuses the foreign encryption context
        services.registries().credentials(replace(connection, id="reg_other"))


def test_approval_by_an_operator_and_the_audit_trail(door: Door) -> None:
    created = create(door).json
    approved = door.call("POST", f"/v1/registries/{created['id']}/approve", scopes=OPERATOR, key_id="feedfacefeedface")
    assert approved.status == 200
    assert approved.json["status"] == "approved"
    assert approved.json["approved_by"] == "apikey:feedfacefeedface"
    again = door.call("POST", f"/v1/registries/{created['id']}/approve", scopes=OPERATOR)
    assert again.json == approved.json  # idempotent, no second event
    updated = door.call(
        "PUT", f"/v1/registries/{created['id']}/credentials", scopes=OPERATOR, body={"credentials": TOKEN}
    )
    assert updated.status == 200
    assert (updated.json["auth_type"], updated.json["username"], updated.json["status"]) == ("token", None, "approved")
    removed = door.call("DELETE", f"/v1/registries/{created['id']}", scopes=OPERATOR)
    assert removed.status == 204
    assert door.call("GET", f"/v1/registries/{created['id']}", scopes=READER).status == 404

    trail = [(r.type, dict(r.data), r.subject) for r in events("acme")]
    rid = created["id"]
    assert {subject for _, _, subject in trail} == {f"registry/{rid}"}
    assert [(kind, data) for kind, data, _ in trail] == [
        ("registry.connected", {"registry_id": rid, "name": "corp", "upstream_host": "registry.example.com"}),
        ("registry.approved", {"registry_id": rid, "name": "corp", "approved_by": "apikey:feedfacefeedface"}),
        ("registry.credentials_updated", {"registry_id": rid, "name": "corp", "auth_type": "token"}),
        ("registry.removed", {"registry_id": rid, "name": "corp"}),
    ]
    # The name is free again once removed.
    assert create(door).status == 201


@pytest.mark.parametrize(
    ("method", "path", "scopes", "status"),
    [
        ("POST", "/v1/registries", READER, 403),
        ("POST", "/v1/registries", ["integrations:admin"], 403),
        ("POST", "/v1/registries", DEVICE, 403),
        ("GET", "/v1/registries", DEVICE, 403),
        ("GET", "/v1/registries", OPERATOR, 200),
        ("GET", "/v1/registries", ["integrations:admin"], 200),
        ("POST", "/v1/registries/{id}/approve", READER, 403),
        ("POST", "/v1/registries/{id}/approve", ["integrations:admin"], 403),
        ("PUT", "/v1/registries/{id}/credentials", READER, 403),
        ("DELETE", "/v1/registries/{id}", READER, 403),
        ("GET", "/v1/registries/{id}", READER, 200),
    ],
)
def test_scopes(door: Door, method: str, path: str, scopes: list[str], status: int) -> None:
    created = create(door).json
    body: Any = None
    if method == "POST" and path == "/v1/registries":
        body = {"name": "other", "upstream_url": "https://registry.example.com", "credentials": BASIC}
    elif method == "PUT":
        body = {"credentials": TOKEN}
    answer = door.call(method, path.format(id=created["id"]), scopes=scopes, body=body)
    assert answer.status == status, answer.json
    if status == 403:
        assert answer.json["error"]["code"] == "missing_scope"
    assert door.call("GET", f"/v1/registries/{created['id']}", scopes=READER).json["status"] == "pending"


def test_another_tenant_sees_nothing(door: Door) -> None:
    created = create(door).json
    for method, path in (
        ("GET", f"/v1/registries/{created['id']}"),
        ("POST", f"/v1/registries/{created['id']}/approve"),
        ("DELETE", f"/v1/registries/{created['id']}"),
    ):
        answer = door.call(method, path, tenant="globex", scopes=OPERATOR)
        assert answer.status == 404, answer.json
    assert door.call("GET", "/v1/registries", tenant="globex", scopes=READER).json["items"] == []
    # Names are per tenant.
    assert create(door, tenant="globex").status == 201


@pytest.mark.parametrize(
    ("fields", "status", "code", "field"),
    [
        ({"name": "Bad_Name"}, 400, "invalid_request", "name"),
        ({"name": "-x"}, 400, "invalid_request", "name"),
        ({"upstream_url": "http://registry.example.com"}, 400, "egress.scheme", "upstream_url"),
        ({"upstream_url": "https://169.254.169.254"}, 400, "egress.metadata", "upstream_url"),
        ({"upstream_url": "https://127.0.0.1:5000"}, 400, "egress.loopback", "upstream_url"),
        ({"upstream_url": "https://user:pw@registry.example.com"}, 400, "egress.credentials", "upstream_url"),
        ({"upstream_url": "https://registry.example.com/?q=1"}, 400, "invalid_request", "upstream_url"),
        ({"upstream_url": "ftp://registry.example.com"}, 400, "egress.scheme", "upstream_url"),
        ({"credentials": {"type": "basic", "username": "a:b", "password": "x"}}, 400, "invalid_request", None),
        ({"credentials": {"type": "basic", "username": "a"}}, 400, "invalid_request", None),
        ({"credentials": {"type": "token", "token": "has space"}}, 400, "invalid_request", None),
        ({"credentials": {"type": "oauth", "token": "x"}}, 400, "invalid_request", None),
        ({"extra": 1}, 400, "invalid_request", "extra"),
    ],
)
def test_invalid_connections(door: Door, fields: dict[str, Any], status: int, code: str, field: str | None) -> None:
    answer = create(door, **fields)
    assert answer.status == status, answer.json
    assert answer.json["error"]["code"] == code
    if field is not None:
        assert answer.json["error"].get("field") == field


def test_private_upstream_needs_the_operator_opt_in(door: Door) -> None:
    body: dict[str, Any] = {"upstream_url": "http://127.0.0.1:5000/v2/", "allow_private_network": True}
    created = create(door, **body)
    assert created.status == 201, created.json
    assert created.json["upstream_url"] == "http://127.0.0.1:5000"  # normalized base URL
    metadata = create(door, name="meta", upstream_url="http://169.254.169.254", allow_private_network=True)
    assert metadata.json["error"]["code"] == "egress.metadata"  # always refused, opt-in or not


def test_names_are_unique_and_the_count_is_limited(door: Door) -> None:
    door.configure(MAX_REGISTRIES_PER_TENANT="2")
    assert create(door, name="one").status == 201
    duplicate = create(door, name="one")
    assert (duplicate.status, duplicate.json["error"]["code"]) == (409, "conflict")
    assert create(door, name="two").status == 201
    third = create(door, name="three")
    assert (third.status, third.json["error"]["code"]) == (422, "limit_exceeded")
    first = door.call("GET", "/v1/registries", scopes=READER, body=None).json["items"][0]
    assert door.call("DELETE", f"/v1/registries/{first['id']}", scopes=OPERATOR).status == 204
    assert create(door, name="three").status == 201


def test_listing_pages(door: Door) -> None:
    for i in range(3):
        assert create(door, name=f"r{i}").status == 201
    first = door.call("GET", "/v1/registries", scopes=READER, query={"limit": "2"})
    assert first.status == 200
    assert len(first.json["items"]) == 2 and first.json["next_cursor"]
    rest = door.call("GET", "/v1/registries", scopes=READER, query={"limit": "2", "cursor": first.json["next_cursor"]})
    names = {r["name"] for r in first.json["items"] + rest.json["items"]}
    assert names == {"r0", "r1", "r2"}
    foreign = door.call(
        "GET", "/v1/registries", tenant="globex", scopes=READER, query={"cursor": first.json["next_cursor"]}
    )
    assert (foreign.status, foreign.json["error"]["code"]) == (400, "invalid_cursor")
