"""Settings (T001): every knob of the service, from the environment or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32
MASK = "***"
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class DatabaseSettings(BaseSettings):
    """Just the database, for commands that need nothing else (`migrate`, `check`)."""

    # An empty variable counts as unset: docker-compose.yml passes `${VAR:-}` for every setting.
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,
        env_ignore_empty=True,
    )

    database_url: SecretStr

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql:// URL")
        return value


class Settings(DatabaseSettings):
    """The service's configuration. Secrets are `SecretStr`: never in a repr, log or error."""

    better_auth_secret: SecretStr | None = None
    better_auth_secret_file: Path | None = None
    better_auth_url: str | None = None
    better_auth_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=3600)

    db_pool_min_size: int = Field(default=2, ge=0, le=1000)
    # Per worker. Requests beyond it queue in the worker and are handed connections as answers come
    # in (db.Database), so a few per PostgreSQL core keep it busy; more in flight only make its
    # backends take turns: on one PostgreSQL core, 8 against 20 cost PostgreSQL 16-26 % less CPU
    # per request and the worker 11-13 % less (#10).
    db_pool_max_size: int = Field(default=8, ge=1, le=1000)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    db_connect_timeout_seconds: int = Field(default=5, ge=1, le=300)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)
    db_prepared_statements: bool = True

    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["http://localhost:3000"]
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    # Larger request bodies are refused with 413 before the rest of them is read.
    max_body_bytes: int = Field(default=64 * 1024, ge=1, le=64 * 1024 * 1024)
    # SIGTERM to exit, at most: in-flight requests finish within it (see todo_api.server).
    shutdown_grace_seconds: float = Field(default=20.0, ge=1, le=3600)
    # After SIGTERM, keep accepting this long while /readyz answers 503, for load balancers that
    # poll readiness before they stop routing (Kubernetes); nginx retries a refused connection.
    shutdown_delay_seconds: float = Field(default=0.0, ge=0, le=3600)
    # Prometheus metrics at /metrics (todo_api.metrics); off, /metrics is a 404 like any path.
    metrics_enabled: bool = False

    @field_validator("jwt_algorithms", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("jwt_algorithms")
    @classmethod
    def _known_hmac_algorithms(cls, value: list[str]) -> list[str]:
        unknown = [alg for alg in value if alg not in HMAC_ALGORITHMS]
        if unknown or not value:
            raise ValueError(f"must be a comma-separated subset of {', '.join(HMAC_ALGORITHMS)}")
        return value

    @field_validator("better_auth_url", "better_auth_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path:
                raise ValueError("must be comma-separated origins such as https://app.example.com")
        return value

    @model_validator(mode="after")
    def _secret_and_modes(self) -> Settings:
        if self.better_auth_secret_file is not None:
            if self.better_auth_secret is not None:
                raise ValueError("set BETTER_AUTH_SECRET or BETTER_AUTH_SECRET_FILE, not both")
            try:
                text = self.better_auth_secret_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ValueError(
                    f"BETTER_AUTH_SECRET_FILE cannot be read ({exc.strerror})"
                ) from None
            self.better_auth_secret = SecretStr(text)
        secret = self.better_auth_secret
        if secret is not None and len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"BETTER_AUTH_SECRET must be at least {MIN_SECRET_LENGTH} characters")
        if self.better_auth_secret is None and self.jwks_url is None:
            raise ValueError(
                "BETTER_AUTH_SECRET (or BETTER_AUTH_SECRET_FILE) or BETTER_AUTH_URL / "
                "BETTER_AUTH_JWKS_URL must be set: there is no way to verify tokens"
            )
        if self.db_pool_min_size > self.db_pool_max_size:
            raise ValueError("DB_POOL_MIN_SIZE must not exceed DB_POOL_MAX_SIZE")
        if self.shutdown_delay_seconds >= self.shutdown_grace_seconds:
            raise ValueError("SHUTDOWN_DELAY_SECONDS must be less than SHUTDOWN_GRACE_SECONDS")
        return self

    @property
    def jwks_url(self) -> str | None:
        """Where Better Auth publishes its keys: explicit, or derived from BETTER_AUTH_URL."""
        if self.better_auth_jwks_url:
            return self.better_auth_jwks_url
        if self.better_auth_url:
            return f"{self.better_auth_url}/api/auth/jwks"
        return None

    def masked(self) -> dict[str, object]:
        """Every setting as it may be logged, from the model's own fields: secrets (`SecretStr`)
        are `***`, the database URL keeps everything but its password and query; plus the
        derived `jwks_url`."""
        values: dict[str, object] = self.model_dump(mode="json")
        for name in type(self).model_fields:
            if isinstance(getattr(self, name), SecretStr):
                values[name] = MASK
        values["database_url"] = _without_password(self.database_url.get_secret_value())
        values["jwks_url"] = self.jwks_url
        return values


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    # The query may carry a password too (?password=...), or key file paths.
    return parts._replace(netloc=netloc, query="").geturl()


def describe_validation_error(error: ValidationError) -> str:
    """One line naming each bad variable, never its value."""
    problems = []
    for item in error.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        problems.append(f"{name}: {message}" if name else message)
    return "invalid configuration: " + "; ".join(problems)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()  # type: ignore[call-arg]  # values come from the environment
