"""Commands of the portfolio work: `playbooks`, `tasks create|update|list`, `runs`, `monitor`
and `effect`. Each parses options and calls `serving.tasks`, `serving.monitoring`,
`serving.effect`; tasks made here are audited with the actor `cli:<user>`."""

from __future__ import annotations

import getpass
import json
from datetime import datetime
from typing import Annotated, Any

import typer

from scoring.cli_support import StoreUrl, Warehouse, open_warehouse, scorer_of, settings_of

tasks_app = typer.Typer(help="Tasks: what to do for an account, by hand or from a playbook.",
                        no_args_is_help=True)
Day = Annotated[datetime | None, typer.Option("--due", formats=["%Y-%m-%d"],
                                              help="Due date (YYYY-MM-DD).")]


def register(app: typer.Typer) -> None:
    app.command("playbooks")(playbooks)
    app.add_typer(tasks_app, name="tasks")
    app.command("runs")(runs)
    app.command("monitor")(monitor)
    app.command("effect")(effect)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


def _store(ctx: typer.Context, store_url: str | None) -> Any:
    from serving.store import open_store

    return open_store(store_url or settings_of(ctx).paths.store_url)


def _playbooks(ctx: typer.Context) -> Any:
    from scoring.playbooks import PlaybookError, load_playbooks

    try:
        return load_playbooks(settings_of(ctx).health.playbooks_file)
    except PlaybookError as exc:
        raise typer.BadParameter(str(exc), param_hint="health.playbooks_file") from None


def _echo(rows: Any) -> None:
    typer.echo(json.dumps(rows, indent=2, default=str))


def playbooks(ctx: typer.Context,
              flag: Annotated[list[str] | None, typer.Option(help="A raised flag code.")] = None,
              band: Annotated[str | None, typer.Option(help="The score's band.")] = None,
              lifecycle: Annotated[str | None, typer.Option(help="Lifecycle stage.")] = None,
              tier: Annotated[str | None, typer.Option(help="Value tier.")] = None) -> None:
    """List the playbooks (packaged and custom), or those matching a flag/band/stage/tier."""
    from scoring.playbooks import MatchContext, match_playbooks

    books = _playbooks(ctx)
    if flag or band or lifecycle or tier:
        books = match_playbooks(books, MatchContext(frozenset(flag or ()), band, lifecycle, tier))
    _echo([b.model_dump() for b in books])


@tasks_app.command("create")
def create_task(ctx: typer.Context,
                account_id: Annotated[str, typer.Argument(help="The account.")],
                owner: Annotated[str, typer.Option(help="Who does it.")],
                title: Annotated[str | None, typer.Option(help="What to do.")] = None,
                playbook: Annotated[str | None, typer.Option(help="Start a playbook.")] = None,
                due: Day = None, notes: str = "", store_url: StoreUrl = None) -> None:
    """Create a task, or one per action of a playbook."""
    from pydantic import ValidationError

    from serving.errors import PayloadError
    from serving.schemas.operations import TaskRequest
    from serving.tasks import create_tasks

    try:
        req = TaskRequest(accountId=account_id, owner=owner, title=title, playbook=playbook,
                          dueDate=due.date() if due else None, notes=notes)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _store(ctx, store_url) as store:
        try:
            out = create_tasks(store.engine, req, _actor(), _playbooks(ctx),
                               today=datetime.now().date())
        except PayloadError as exc:
            raise typer.BadParameter(str(exc)) from None
    _echo([t.model_dump() for t in out])


@tasks_app.command("update")
def update_task(ctx: typer.Context, task_id: Annotated[int, typer.Argument()],
                status: Annotated[str | None, typer.Option(
                    help="open, in_progress, done or cancelled.")] = None,
                owner: str | None = None, due: Day = None, notes: str | None = None,
                store_url: StoreUrl = None) -> None:
    """Change a task's status, owner, due date or notes (audited)."""
    from pydantic import ValidationError

    from serving.errors import NotFound, PayloadError
    from serving.schemas.operations import TaskUpdate
    from serving.tasks import update_task as update

    try:
        req = TaskUpdate(status=status, owner=owner, dueDate=due.date() if due else None,
                         notes=notes)
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _store(ctx, store_url) as store:
        try:
            out = update(store.engine, task_id, req, _actor())
        except (NotFound, PayloadError) as exc:
            raise typer.BadParameter(str(exc), param_hint="TASK_ID") from None
    _echo(out.model_dump())


@tasks_app.command("list")
def list_tasks(ctx: typer.Context, account: str | None = None, status: str | None = None,
               owner: str | None = None, limit: int = 100, store_url: StoreUrl = None) -> None:
    """List tasks, soonest due first."""
    from serving.tasks import list_tasks as listed

    with _store(ctx, store_url) as store:
        out = listed(store.engine, account_id=account, status=status, owner=owner, limit=limit)
    _echo([t.model_dump() for t in out])


def runs(ctx: typer.Context, limit: int = 20, store_url: StoreUrl = None) -> None:
    """The run log of the daily scoring (newest first)."""
    from serving.operations import run_out
    from serving.operations_store import list_runs

    with _store(ctx, store_url) as store:
        _echo([run_out(r).model_dump() for r in list_runs(store.engine, limit=limit)])


def monitor(ctx: typer.Context, warehouse: Warehouse = None, store_url: StoreUrl = None,
            no_alerts: Annotated[bool, typer.Option("--no-alerts")] = False) -> None:
    """Drift against the training reference, realised AUC/calibration/lift on matured labels,
    the KPIs; raises the drift and AUC alerts unless --no-alerts."""
    from serving.monitoring import monitor as run

    settings = settings_of(ctx)
    con = open_warehouse(settings, warehouse)
    with _store(ctx, store_url) as store:
        out = run(store, con, scorer_of(settings, None), settings, raise_alerts=not no_alerts)
    con.close()
    _echo(out)


def effect(ctx: typer.Context, playbook: str | None = None, warehouse: Warehouse = None,
           store_url: StoreUrl = None) -> None:
    """Did it work: completed playbooks against matched similar untreated accounts."""
    from scoring.pipeline import score_accounts
    from serving.effect import playbook_effect

    settings = settings_of(ctx)
    con = open_warehouse(settings, warehouse)
    scorer = scorer_of(settings, None)
    with _store(ctx, store_url) as store:
        out = playbook_effect(store, con, settings.health, playbook,
                              scored_at=lambda d: score_accounts(con, None, d, scorer,
                                                                 trend=False))
    con.close()
    _echo(out)
