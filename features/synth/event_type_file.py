"""Declared customer event types from the command line: the `example` preset or a YAML file.

A file lists the types, each a mapping with `name` and `churn_effect` (log-odds per unit of
propensity: positive raises churn, negative lowers it, 0 is noise) and optionally `rate`,
`spread` and `timescale` (`features.synth.params.EventTypeEffect`), either as a bare list or
under `event_types:`. Errors name the file, the entry and the field.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml

from features.synth.params import EXAMPLE_EVENT_TYPES, EventTypeEffect

PRESETS = {"example": EXAMPLE_EVENT_TYPES}
_FIELDS = {f.name for f in fields(EventTypeEffect)}


class EventTypeFileError(ValueError):
    """An event-type declaration that cannot be read."""


def load_event_types(spec: str) -> tuple[EventTypeEffect, ...]:
    """The preset named `spec`, or the types the YAML file at `spec` declares."""
    if spec in PRESETS:
        return PRESETS[spec]
    path = Path(spec)
    if not path.is_file():
        raise EventTypeFileError(f"{spec}: neither a preset ({', '.join(PRESETS)}) nor a file")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EventTypeFileError(f"{path}: not valid YAML ({exc})") from None
    entries = doc.get("event_types") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not entries:
        raise EventTypeFileError(f"{path}: expected a list of event types (or 'event_types:' "
                                 "holding one)")
    out: list[EventTypeEffect] = []
    for i, entry in enumerate(entries, start=1):
        where = f"{path}, event type {i}"
        if not isinstance(entry, dict):
            raise EventTypeFileError(f"{where}: expected a mapping with name and churn_effect")
        unknown = set(entry) - _FIELDS
        if unknown:
            raise EventTypeFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))} "
                                     f"(known: {', '.join(sorted(_FIELDS))})")
        if "name" not in entry:
            raise EventTypeFileError(f"{where}: field 'name' is missing")
        for key in _FIELDS - {"name"}:
            if key in entry and (isinstance(entry[key], bool)
                                 or not isinstance(entry[key], int | float)):
                raise EventTypeFileError(f"{where}, field {key!r}: expected a number, got "
                                         f"{entry[key]!r}")
        try:
            out.append(EventTypeEffect(**{**entry, "name": str(entry["name"])}))
        except ValueError as exc:
            raise EventTypeFileError(f"{where}: {exc}") from None
    names = [t.name for t in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise EventTypeFileError(f"{path}: event type(s) declared twice: {', '.join(dupes)}")
    return tuple(out)
