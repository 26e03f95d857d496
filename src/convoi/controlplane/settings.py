"""The control plane's settings: one pydantic-settings class, read from the environment.

Built once by :func:`convoi.controlplane.app.create_app` (or the CLI) and injected into routes
through :data:`convoi.controlplane.api.deps.SettingsDep`; nothing instantiates it at import time.
Outside ``CONVOI_ENVIRONMENT=local`` placeholder secrets (the devstack's ``devkey``/``secret``,
``changethis``) are refused, so a deployment cannot start with them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_DATABASE_URL", "PLACEHOLDER_SECRETS", "ControlPlaneSettings"]

DEFAULT_DATABASE_URL = "sqlite:///.convoi/controlplane.sqlite3"
PLACEHOLDER_SECRETS = frozenset({"", "secret", "devkey", "changethis", "changeme"})
"""Values refused for secrets outside local use."""


class ControlPlaneSettings(BaseSettings):
    """Everything ``convoi-api`` reads from its environment (and an optional ``.env`` file)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    environment: Literal["local", "staging", "production"] = Field(
        "local", alias="CONVOI_ENVIRONMENT"
    )
    """``local`` accepts placeholder secrets (with a warning in the log); the others refuse them."""
    database_url: str = Field(DEFAULT_DATABASE_URL, alias="CONVOI_DATABASE_URL")
    """SQLAlchemy URL: ``sqlite:///path`` or ``postgresql+psycopg://user:pass@host:port/db``."""
    auto_migrate: bool = Field(True, alias="CONVOI_AUTO_MIGRATE")
    """Apply pending Alembic migrations when the app starts."""

    livekit_url: str = Field("ws://127.0.0.1:7880", alias="LIVEKIT_URL")
    """LiveKit server the control plane creates rooms and dispatches on."""
    livekit_api_key: str = Field("devkey", alias="LIVEKIT_API_KEY")
    livekit_api_secret: SecretStr = Field(SecretStr("secret"), alias="LIVEKIT_API_SECRET")
    public_livekit_url_override: str | None = Field(None, alias="CONVOI_PUBLIC_LIVEKIT_URL")
    """What clients get in ``livekit.url`` (default: ``LIVEKIT_URL``)."""

    agent_name: str = Field("convoi", alias="CONVOI_AGENT_NAME", min_length=1)
    """The worker's ``agent_name``: every call is dispatched to it."""
    config_dir: Path = Field(Path("agents_config"), alias="CONVOI_CONFIG_DIR")
    """Agents, squads and phone numbers calls are validated against."""
    events_secret: SecretStr = Field(SecretStr("changethis"), alias="CONVOI_EVENTS_SECRET")
    """Shared secret the worker signs call events with (HMAC-SHA256)."""

    token_ttl_seconds: int = Field(3600, alias="CONVOI_TOKEN_TTL_SECONDS", ge=60, le=86_400)
    """Lifetime of the participant token of a web call."""
    room_empty_timeout_seconds: int = Field(
        300, alias="CONVOI_ROOM_EMPTY_TIMEOUT_SECONDS", ge=10, le=86_400
    )
    """LiveKit closes a call's room when nobody joined it within this time."""
    call_lease_seconds: float = Field(60.0, alias="CONVOI_CALL_LEASE_SECONDS", ge=5, le=3600)
    """An ``active`` call with no event from its worker for this long is ended ``failed`` /
    ``worker_lost`` (the worker reports progress every ``CONVOI_PROGRESS_INTERVAL``)."""
    call_start_lease_seconds: float = Field(
        180.0, alias="CONVOI_CALL_START_LEASE_SECONDS", ge=5, le=3600
    )
    """The same for a call still ``initiated`` or ``ringing`` (no worker took it, or it died while
    the phone rang)."""
    call_resume_after_seconds: float = Field(
        15.0, alias="CONVOI_CALL_RESUME_AFTER_SECONDS", ge=0, le=3600
    )
    """An ``active`` call with no event for this long, whose callee is still in the room and whose
    agent is not (its worker died), is dispatched again to resume from its checkpoint; 0: never
    (it is then ended by ``CONVOI_CALL_LEASE_SECONDS``)."""
    max_resumes: int = Field(2, alias="CONVOI_MAX_RESUMES", ge=0, le=10)
    """Times the control plane may dispatch one call again."""
    db_pool_size: int = Field(10, alias="CONVOI_DB_POOL_SIZE", ge=1, le=500)
    """Database connections kept open for public requests (per API process)."""
    db_max_overflow: int = Field(20, alias="CONVOI_DB_MAX_OVERFLOW", ge=0, le=500)
    """Extra connections opened under load beyond ``CONVOI_DB_POOL_SIZE``."""
    db_pool_timeout_seconds: float = Field(3.0, alias="CONVOI_DB_POOL_TIMEOUT_SECONDS", gt=0, le=60)
    """How long a request waits for a free connection before answering 503 (Retry-After)."""
    db_events_pool_size: int = Field(5, alias="CONVOI_DB_EVENTS_POOL_SIZE", ge=1, le=100)
    """Connections (and threads) reserved for the worker's call events: public traffic never
    starves them."""
    api_threads: int = Field(40, alias="CONVOI_API_THREADS", ge=1, le=1000)
    """Threads serving public requests (database work and LiveKit calls)."""
    max_in_flight: int = Field(512, alias="CONVOI_API_MAX_IN_FLIGHT", ge=1, le=100_000)
    """Public requests served at once; beyond it the API answers 503 ``overloaded`` at once."""
    rate_limit_sk_per_minute: int = Field(
        1200, alias="CONVOI_RATE_LIMIT_SK_PER_MINUTE", ge=0, le=10_000_000
    )
    """Requests per minute per secret key (a burst of this many, refilled evenly); 0: no limit."""
    rate_limit_pk_per_minute: int = Field(
        30, alias="CONVOI_RATE_LIMIT_PK_PER_MINUTE", ge=0, le=10_000_000
    )
    """The same per publishable key (it ships in web pages: tight by default)."""
    max_concurrent_calls: int = Field(20, alias="CONVOI_MAX_CONCURRENT_CALLS", ge=0, le=1_000_000)
    """Calls an account may have initiated, ringing or active at once (429 beyond); 0: no limit."""
    dev_api_keys: str = Field("", alias="CONVOI_DEV_API_KEYS")
    """Local use only: ``acct_demo=sk_live_…,acct_demo=pk_live_…`` stored (hashed) at start-up."""
    webhook_timeout_seconds: float = Field(
        10.0, alias="CONVOI_WEBHOOK_TIMEOUT_SECONDS", gt=0, le=120
    )
    """A customer webhook endpoint must answer within this (else the attempt failed)."""
    webhook_concurrency: int = Field(8, alias="CONVOI_WEBHOOK_CONCURRENCY", ge=1, le=256)
    """Webhook deliveries in flight at once per API process."""
    webhook_retry_hours: float = Field(24.0, alias="CONVOI_WEBHOOK_RETRY_HOURS", gt=0, le=168)
    """A delivery is retried (exponential backoff) for this long after its event, then failed."""
    webhook_backoff_base_seconds: float = Field(
        5.0, alias="CONVOI_WEBHOOK_BACKOFF_BASE_SECONDS", gt=0, le=3600
    )
    """Wait after the first failed attempt; doubled after each further one."""
    webhook_backoff_max_seconds: float = Field(
        3600.0, alias="CONVOI_WEBHOOK_BACKOFF_MAX_SECONDS", gt=0, le=86_400
    )
    """Longest wait between two attempts."""
    webhook_poll_seconds: float = Field(1.0, alias="CONVOI_WEBHOOK_POLL_SECONDS", gt=0, le=60)
    """How often the deliverer looks for due deliveries in the outbox."""

    seed_definitions_override: bool | None = Field(None, alias="CONVOI_SEED_DEFINITIONS")
    """Import the shipped definitions (``CONVOI_CONFIG_DIR``) into an account that has none, on its
    first request and at start-up for ``CONVOI_DEV_API_KEYS`` accounts (default: on when
    ``CONVOI_ENVIRONMENT=local``, off otherwise)."""

    @property
    def seed_definitions(self) -> bool:
        """Whether accounts without definitions get the shipped ones (see the field above)."""
        if self.seed_definitions_override is not None:
            return self.seed_definitions_override
        return self.environment == "local"

    api_processes: int = Field(0, alias="CONVOI_API_PROCESSES", ge=0, le=256)
    """``convoi-api serve`` processes sharing the port; 0: one on SQLite, one per CPU otherwise.
    Pools and threads above are per process."""
    redis_url: str | None = Field(None, alias="CONVOI_REDIS_URL")
    """``redis://host:port/db``: rate-limit buckets shared by every API process (else each
    process counts its own). Unreachable: each process counts alone until it answers again."""

    @property
    def processes(self) -> int:
        """``CONVOI_API_PROCESSES``, with 0 resolved (one on SQLite, one per CPU otherwise)."""
        if self.api_processes:
            return self.api_processes
        return 1 if self.database_url.startswith("sqlite") else max(1, os.cpu_count() or 1)

    @property
    def public_livekit_url(self) -> str:
        """The LiveKit URL handed to clients."""
        return self.public_livekit_url_override or self.livekit_url

    def placeholder_secrets(self) -> list[str]:
        """Names of the variables that still hold a placeholder value."""
        values = {
            "LIVEKIT_API_KEY": self.livekit_api_key,
            "LIVEKIT_API_SECRET": self.livekit_api_secret.get_secret_value(),
            "CONVOI_EVENTS_SECRET": self.events_secret.get_secret_value(),
        }
        return [name for name, value in values.items() if value.strip() in PLACEHOLDER_SECRETS]

    def dev_keys(self) -> list[tuple[str, str]]:
        """``CONVOI_DEV_API_KEYS`` as ``(account_id, key)`` pairs."""
        pairs: list[tuple[str, str]] = []
        for item in filter(None, (part.strip() for part in self.dev_api_keys.split(","))):
            account, sep, key = item.partition("=")
            if not sep or not account.strip() or not key.strip():
                raise ValueError("CONVOI_DEV_API_KEYS: expected account_id=key[,account_id=key]")
            pairs.append((account.strip(), key.strip()))
        return pairs

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.environment != "local":
            if names := self.placeholder_secrets():
                raise ValueError(
                    f"placeholder value in {', '.join(names)}: set a real secret "
                    f"(CONVOI_ENVIRONMENT={self.environment})"
                )
            if self.dev_api_keys:
                raise ValueError("CONVOI_DEV_API_KEYS is for CONVOI_ENVIRONMENT=local only")
        self.dev_keys()
        return self
