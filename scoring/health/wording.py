"""The wording file (`wording.yaml`): loading it and filling its templates.

Owns the one place where HealthScore's words live (flags, factors, interpretations, missing
data) and a formatter that shows a missing number as "n/a", a 0/1 flag as no/yes (`yesno`)
and a percent change as +12% (`pct`). Model explanations share it (`serving.explain_words`),
so one signal reads the same in both. No scoring logic here.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from scoring.health.profiles import FLAG_CODES, SCORED_DIMENSIONS, RulesError

DEFAULT_WORDING_FILE = Path(__file__).with_name("wording.yaml")

_REQUIRED = ("flags", "factors", "dimensions", "missing", "inputs", "interpretation", "trend",
             "no_flags")


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if format_spec == "yesno":
            return "yes" if value else "no"
        if format_spec == "pct":
            return f"{value:+.0f}%"
        return super().format_field(value, format_spec)


_FORMATTER = _Formatter()


def fill(template: str, *args: Any, **values: Any) -> str:
    """Fill a template; NaN or None shows as n/a.

    A template whose fields are plain names (all of wording.yaml's) is parsed once and
    filled from its parts: a batch fills a sentence for every flag of every account, and
    `string.Formatter` parses the template again on each call."""
    parts = _parts(template) if not args else None
    if parts is None:
        return _FORMATTER.format(template, *args, **values)
    out = []
    for literal, name, spec in parts:
        out.append(literal)
        if name is not None:
            value = values[name]
            # _Formatter.format_field, inlined for the common case of a number without a spec.
            if spec or value is None or (isinstance(value, float) and math.isnan(value)):
                out.append(_FORMATTER.format_field(value, spec))
            else:
                out.append(format(value))
    return "".join(out)


@lru_cache(maxsize=512)
def _parts(template: str) -> tuple[tuple[str, str | None, str], ...] | None:
    """(literal, field name, format spec) of each part of a template whose every field is a
    plain name with a literal spec and no conversion; None for any other template."""
    parts = []
    for literal, name, spec, conversion in _FORMATTER.parse(template):
        if name is not None and (not name.isidentifier() or conversion is not None
                                 or "{" in (spec or "")):
            return None
        parts.append((literal, name, spec or ""))
    return tuple(parts)


@dataclass(frozen=True)
class Wording:
    data: dict[str, Any]
    source: Path

    def flag(self, code: str) -> dict[str, str]:
        return self.data["flags"][code]

    def dimension(self, dim: str) -> str:
        return str(self.data["dimensions"].get(dim, dim))

    def value(self, kind: str, value: Any) -> str:
        formats = self.data["factors"]["value_formats"]
        return fill(formats.get(kind, formats["default"]), value)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


def parse_wording(data: Any, source: Path) -> Wording:
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a mapping")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise RulesError(f"{source}: missing sections {missing}")
    for code in FLAG_CODES:
        entry = data["flags"].get(code)
        if not isinstance(entry, dict) or not all(entry.get(k) for k in ("title", "evidence",
                                                                          "hint")):
            raise RulesError(f"{source}: flags.{code}: needs title, evidence and hint")
    for dim in SCORED_DIMENSIONS:
        if dim not in data["dimensions"]:
            raise RulesError(f"{source}: dimensions.{dim}: missing label")
    if "default" not in data["factors"].get("value_formats", {}):
        raise RulesError(f"{source}: factors.value_formats.default: missing")
    return Wording(data=data, source=source)


@lru_cache(maxsize=8)
def load_wording(path: Path | None = None) -> Wording:
    """Load the wording file (the packaged one when `path` is None); cached, it never changes
    while a process runs."""
    source = Path(path) if path is not None else DEFAULT_WORDING_FILE
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{source}: cannot read the wording file: {exc}") from None
    return parse_wording(data, source)
