"""Playbooks: templates of recommended actions for what a score shows (a flag, a band) or what
the account is (a lifecycle stage, a value tier), and matching them to an account.

Pure: the packaged playbooks (scoring/playbooks.yaml) and an optional custom file are read and
validated with pydantic, every problem named by file and field (`PlaybookError`); matching takes
a `MatchContext` and returns the playbooks that apply, most urgent first. Lifecycle stage and
value tier are optional inputs: an account without them matches no playbook that asks for one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scoring.health.profiles import FLAG_CODES

PACKAGED = Path(__file__).with_name("playbooks.yaml")


class PlaybookError(ValueError):
    """A playbook file that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Action(_Strict):
    title: str = Field(min_length=3, max_length=500)
    due_days: int = Field(7, ge=0, le=365)
    """Days from the task's creation to its due date."""


class When(_Strict):
    flags: tuple[str, ...] = ()
    bands: tuple[str, ...] = ()
    lifecycle: tuple[str, ...] = ()
    tiers: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _known_flags(self) -> When:
        unknown = [f for f in self.flags if f not in FLAG_CODES]
        if unknown:
            raise ValueError(f"unknown flag code(s) {unknown}: one of {list(FLAG_CODES)}")
        return self

    @property
    def empty(self) -> bool:
        return not (self.flags or self.bands or self.lifecycle or self.tiers)


class Playbook(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    title: str = Field(min_length=3, max_length=200)
    priority: int = Field(50, ge=0, le=1000)
    """Lower is more urgent: the order matching returns playbooks in."""
    when: When
    actions: tuple[Action, ...] = Field(min_length=1)


class PlaybookFile(_Strict):
    playbooks: tuple[Playbook, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PlaybookFile:
        names = [p.name for p in self.playbooks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"playbook names must be unique; repeated: {twice}")
        return self


@dataclass(frozen=True)
class MatchContext:
    """What a playbook is matched on. `lifecycle` and `tier` come from the lifecycle and value
    models when present; None matches no playbook that asks for one."""

    flags: frozenset[str] = field(default_factory=frozenset)
    band: str | None = None
    lifecycle: str | None = None
    tier: str | None = None

    @classmethod
    def of_score(cls, score: dict[str, Any], *, lifecycle: str | None = None,
                 tier: str | None = None) -> MatchContext:
        """The context of a stored or computed score row (its `flags` and `band`)."""
        flags = frozenset(f["code"] if isinstance(f, dict) else str(f)
                          for f in score.get("flags") or [])
        band = score.get("band")
        return cls(flags, band if isinstance(band, str) else None, lifecycle, tier)


def _where(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def parse_playbooks(data: Any, source: Path | str) -> tuple[Playbook, ...]:
    try:
        return PlaybookFile.model_validate(data).playbooks
    except ValidationError as exc:
        problems = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in exc.errors())
        raise PlaybookError(f"{source}: {problems}") from None


def read_playbooks(path: Path) -> tuple[Playbook, ...]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PlaybookError(f"{path}: no such playbook file") from None
    except yaml.YAMLError as exc:
        raise PlaybookError(f"{path}: not valid YAML: {exc}") from None
    return parse_playbooks(data, path)


def load_playbooks(custom: Path | None = None) -> tuple[Playbook, ...]:
    """The packaged playbooks, with those of `custom` added (same name: the custom one)."""
    found = {p.name: p for p in read_playbooks(PACKAGED)}
    if custom is not None:
        found.update({p.name: p for p in read_playbooks(custom)})
    return tuple(sorted(found.values(), key=lambda p: (p.priority, p.name)))


def matches(playbook: Playbook, ctx: MatchContext) -> bool:
    w = playbook.when
    if w.empty:
        return False
    return ((not w.flags or bool(ctx.flags & set(w.flags)))
            and (not w.bands or ctx.band in w.bands)
            and (not w.lifecycle or ctx.lifecycle in w.lifecycle)
            and (not w.tiers or ctx.tier in w.tiers))


def match_playbooks(playbooks: Iterable[Playbook], ctx: MatchContext) -> list[Playbook]:
    """The playbooks that apply to an account, most urgent first."""
    return sorted((p for p in playbooks if matches(p, ctx)), key=lambda p: (p.priority, p.name))


def find(playbooks: Iterable[Playbook], name: str) -> Playbook | None:
    return next((p for p in playbooks if p.name == name), None)


def task_plan(playbook: Playbook, start: date) -> list[tuple[str, date]]:
    """(title, due date) of each action of a playbook started on `start`."""
    return [(a.title, start + timedelta(days=a.due_days)) for a in playbook.actions]
