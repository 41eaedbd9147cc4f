"""Request and response shapes of the registry connection API (OpenAPI is generated from these)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasicCredentials(Strict):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=4096, description="Never returned")


class TokenCredentials(Strict):
    type: Literal["token"]
    token: str = Field(
        min_length=1,
        max_length=8192,
        description="Sent as a Bearer token, or exchanged at the upstream's token service. Never returned",
    )


Credentials = Annotated[BasicCredentials | TokenCredentials, Field(discriminator="type")]


class RegistryCreate(Strict):
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="Unique within the tenant; devices pull /v2/<name>/<repository>@sha256:<digest>",
    )
    upstream_url: str = Field(
        min_length=1, max_length=2048, description="Base URL of the upstream registry (https; http only when private)"
    )
    credentials: Credentials
    allow_private_network: bool = Field(
        default=False,
        description="Allow an upstream on a private or loopback address (link-local and metadata stay refused)",
    )


class CredentialsUpdate(Strict):
    credentials: Credentials


class Registry(BaseModel):
    id: str
    name: str
    upstream_url: str
    allow_private_network: bool
    status: Literal["pending", "approved"]
    auth_type: Literal["basic", "token"]
    username: str | None
    created_at: str
    created_by: str
    updated_at: str
    approved_at: str | None
    approved_by: str | None
    credentials_updated_at: str


class RegistryPage(BaseModel):
    items: list[Registry]
    next_cursor: str | None
