"""A throwaway PgBouncer in transaction mode, in front of the test PostgreSQL.

Debian's `pgbouncer` refuses to run as root; as root we run it as the embedded cluster's system
user (which can reach the cluster's Unix socket), or as `nobody` for a TCP server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.support.network import free_port


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).is_file()), None
    )


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("pgserver", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("no unprivileged user to run pgbouncer as")


@contextmanager
def running_pgbouncer(database_url: str, *, pool_size: int = 4) -> Iterator[str]:
    """Start PgBouncer (transaction mode) for `database_url`; yield the URL through it."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed (Debian package `pgbouncer`)")
    url = urlsplit(database_url)
    query = parse_qs(url.query)
    host = query.get("host", [url.hostname or "127.0.0.1"])[0]
    server_port = url.port or 5432
    user = url.username or "postgres"
    password = url.password or ""
    database = url.path.lstrip("/")
    port = free_port()
    run_as = _run_as_user()
    with tempfile.TemporaryDirectory(prefix="todo-api-pgbouncer-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o777)
        (workdir / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        (workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{database} = host={host} port={server_port} dbname={database}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            "max_client_conn = 1000\n"
            f"default_pool_size = {pool_size}\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        for path in workdir.iterdir():
            path.chmod(0o644)
        command = [binary, str(workdir / "pgbouncer.ini")]
        if run_as is not None:
            command = ["runuser", "-u", run_as, "--", *command]
        process = subprocess.Popen(  # noqa: S603 - fixed binary and our own config
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        output = process.stdout.read() if process.stdout else ""
                        raise RuntimeError(f"pgbouncer did not start: {output}") from None
                    time.sleep(0.05)
            credentials = f"{user}:{password}@" if password else f"{user}@"
            yield f"postgresql://{credentials}127.0.0.1:{port}/{database}"
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
