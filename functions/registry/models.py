"""Request and response shapes of the registry connection API (OpenAPI is generated from these).

Every bound comes from the deployment's limits (meshanics.config.Limits), read once at import.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from meshanics.config import settings

LIMITS = settings().limits


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BasicCredentials(Strict):
    type: Literal["basic"]
    username: str = Field(min_length=1, max_length=LIMITS.max_username_length)
    password: str = Field(min_length=1, max_length=LIMITS.max_password_length, description="Never returned")


class TokenCredentials(Strict):
    type: Literal["token"]
    token: str = Field(
        min_length=1,
        max_length=LIMITS.max_token_length,
        description="Sent as a Bearer token, or exchanged at the upstream's token service. Never returned",
    )


Credentials = Annotated[BasicCredentials | TokenCredentials, Field(discriminator="type")]


class RegistryCreate(Strict):
    name: str = Field(
        min_length=1,
        max_length=LIMITS.max_registry_name,
        pattern=rf"^[a-z0-9][a-z0-9-]{{0,{LIMITS.max_registry_name - 1}}}$",
        description="Unique within the tenant; devices pull /v2/<name>/<repository>@sha256:<digest>",
    )
    upstream_url: str = Field(
        min_length=1,
        max_length=LIMITS.max_url_length,
        description="Base URL of the upstream registry (https; http only when private)",
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
