"""Commands of the service: `healthscore serve` and `healthscore keys create|list|revoke`.

`serve` becomes `bentoml serve healthscore.service:HealthScoreService` (exec, same PID) with the
host and port of the settings (or the options), BENTOML_HOME inside the project, tracking off, and
the `--config` file passed on through HEALTHSCORE_CONFIG so the service builds the same settings.
`keys` mints, lists and revokes API keys in the store (a key is printed once; only its hash is
kept). Option parsing and output only; `ctx.obj` is the Settings the root command built.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from scoring.cli_support import settings_of

keys_app = typer.Typer(help="API keys of the service (reader, writer, admin).",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `serve` and `keys` to the root app."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")


def service_env(config: Path | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the service process runs with."""
    env = dict(base if base is not None else os.environ)
    env.setdefault("BENTOML_HOME", str(Path.cwd() / "bentoml_home"))  # as the Makefile
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if config is not None:
        env["HEALTHSCORE_CONFIG"] = str(Path(config).resolve())
    return env


def serve_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", "healthscore.service:HealthScoreService",
            "--host", host, "--port", str(port)]


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Bind address [default: serving.host].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: serving.port].")] = None,
) -> None:
    """Start the HealthScore API (BentoML) in place of this process.

    Exec, not a child: the PID a supervisor (systemd, Docker, CI) signals is BentoML's arbiter,
    which stops its workers on SIGTERM/SIGINT (in-flight requests finish, `on_shutdown` stops the
    webhook delivery worker) and frees the port. A parent left in between would die alone and
    leave the server running. The workers run in sessions of their own, so signalling this
    process group would not reach them either; the arbiter is the one to tell.
    """
    settings = settings_of(ctx)
    config = ctx.find_root().params.get("config")
    host, port = host or settings.serving.host, port or settings.serving.port
    cmd = serve_command(host, port)
    typer.echo(f"HealthScore API on http://{host}:{port}/v1 (OpenAPI: /v1/docs)")
    typer.echo(f"HealthScore dashboard on http://{host}:{port}/ (sign in with an API key)")
    sys.stdout.flush()  # exec drops whatever is still buffered
    sys.stderr.flush()
    env = service_env(config)
    # BentoML fixes these when the service class is declared, before any settings are built:
    # pass the values of the settings (file included) as the variables the class reads.
    for name in ("workers", "request_timeout_seconds", "tracing"):
        env.setdefault(f"HEALTHSCORE_SERVING__{name.upper()}",
                       str(getattr(settings.serving, name)).lower()
                       if name == "tracing" else str(getattr(settings.serving, name)))
    os.execvpe(cmd[0], cmd, env)


@keys_app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Who or what the key is for.")],
    role: Annotated[str, typer.Option(help="reader, writer or admin.")] = "reader",
) -> None:
    """Mint a key and print it once."""
    from sqlalchemy.orm import Session

    from serving.auth import ROLES, create_key
    from serving.store import open_store

    if role not in ROLES:
        raise typer.BadParameter(f"must be one of {', '.join(ROLES)}", param_hint="--role")
    settings = settings_of(ctx)
    with open_store(settings.paths.store_url) as store, Session(store.engine) as session, \
            session.begin():
        row, key = create_key(session, name, role, actor="cli")  # type: ignore[arg-type]
        key_id = row.id
    typer.echo(f"key {key_id} ({name}, {role}): {key}")
    typer.echo("Store it now: it is not shown again.", err=True)


@keys_app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """Keys with their role and prefix (never the key)."""
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from serving.ops_store import ApiKey
    from serving.store import open_store

    settings = settings_of(ctx)
    table = Table(title="API keys")
    for col in ("id", "name", "role", "prefix", "created", "revoked"):
        table.add_column(col)
    with open_store(settings.paths.store_url) as store, Session(store.engine) as session:
        for k in session.scalars(select(ApiKey).order_by(ApiKey.id)):
            table.add_row(str(k.id), k.name, k.role, k.prefix, str(k.created_at)[:19],
                          str(k.revoked_at)[:19] if k.revoked_at else "")
    Console().print(table)


@keys_app.command("revoke")
def revoke(ctx: typer.Context,
           key_id: Annotated[int, typer.Argument(help="Id from `healthscore keys list`.")]
           ) -> None:
    """Revoke a key (it stops working within serving.key_cache_seconds)."""
    from sqlalchemy.orm import Session

    from serving.ops_store import ApiKey, utcnow
    from serving.store import open_store

    settings = settings_of(ctx)
    with open_store(settings.paths.store_url) as store, Session(store.engine) as session, \
            session.begin():
        row = session.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            raise typer.BadParameter(f"no active key {key_id}", param_hint="KEY_ID")
        row.revoked_at = utcnow()
    typer.echo(f"key {key_id} revoked")
