"""Settings, read once from the environment (prefix ``LESSONS_`` or the bare
names below) and validated at start-up. Every setting is documented in the
README; ``tests/test_docs.py`` fails when one is missing."""

from __future__ import annotations

import hashlib
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_FILE = "secret_key"  # noqa: S105 - a file name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LESSONS_", extra="ignore")

    environment: str = Field(
        default="development", validation_alias=AliasChoices("LESSONS_ENV", "ENVIRONMENT")
    )
    database_url: str = Field(
        default="", validation_alias=AliasChoices("DATABASE_URL", "LESSONS_DATABASE_URL")
    )
    redis_url: str = Field(
        default="", validation_alias=AliasChoices("REDIS_URL", "LESSONS_REDIS_URL")
    )
    secret_key: str = Field(
        default="", validation_alias=AliasChoices("SECRET_KEY", "LESSONS_SECRET_KEY")
    )
    data_dir: Path = Path("var")
    public_url: str = "http://127.0.0.1:8000"
    allowed_origins: list[str] = []
    cookie_secure: bool = False
    session_idle_minutes: int = 8 * 60
    session_absolute_hours: int = 72
    participant_cookie_days: int = 7
    max_body_bytes: int = 64 * 1024
    coalesce_ms: int = 100
    ws_queue_size: int = 32
    ws_send_timeout: float = 5.0
    ws_ping_interval: float = 20.0
    ws_max_per_participant: int = 5
    ws_max_projectors: int = 10
    ws_max_frame_bytes: int = 4096
    rate_cards_per_minute: int = 30
    rate_votes_per_minute: int = 240
    rate_exports_per_minute: int = 10
    rate_joins_per_ip_per_minute: int = 300
    rate_failed_joins_per_ip_per_minute: int = 30
    rate_failed_joins_per_minute: int = 600
    rate_failed_keys_per_code_per_minute: int = 20
    rate_logins_per_minute: int = 10
    rate_failed_logins_per_minute: int = 300
    rate_similar_per_minute: int = 120
    rate_similar_per_workshop_per_minute: int = 600
    rate_suggestions_per_minute: int = 12
    rate_suggestions_per_workshop_per_minute: int = 30
    rate_renders_per_minute: int = 4
    retention_days: int = 0
    facilitator_sees_private: bool = True
    log_level: str = "info"

    @model_validator(mode="after")
    def _check_secret(self) -> Settings:
        if self.secret_key and len(self.secret_key) < 32:
            raise ValueError("SECRET_KEY must be at least 32 characters (128+ bits).")
        if not self.secret_key and self.environment != "development":
            raise ValueError("SECRET_KEY must be set outside development.")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'lessons.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")

    @property
    def origins(self) -> set[str]:
        return {self.public_url.rstrip("/"), *(o.rstrip("/") for o in self.allowed_origins)}

    def resolved_secret(self) -> str:
        """The server secret. In development an unset secret is generated once
        and kept in the data directory, so links survive a restart."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / DEV_SECRET_FILE
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        path.write_text(value)
        path.chmod(0o600)
        return value

    def deployment_tag(self) -> str:
        """A short public name for this deployment, derived from its secret: the
        Redis channel and rate-limit keys carry it, so two deployments sharing
        one Redis never hear or spend each other's."""
        return hashlib.sha256(self.resolved_secret().encode()).hexdigest()[:12]


@lru_cache
def get_settings() -> Settings:
    return Settings()
