"""The data-contract page, rendered from the code that enforces it.

`render()` writes Markdown from `features.contract.tables` (tables, columns, types, allowed values),
`features.contract.settings.IngestConfig` (the ingest policies, with the docstrings of its fields),
`features.contract.validate` (what is fatal, accepted booleans, timestamps allowed in the future)
and `features.contract.mapping` (the mapping file's keys). `docs/data-contract.md` is exactly this
rendering; a test keeps the two equal. Rewrite the page with `python -m features.contract.doc` (add
`--check` to only compare). Nothing here validates data."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

from features.contract.mapping import JoinSpec, SourceSpec, TableMapping
from features.contract.settings import IngestConfig
from features.contract.tables import TABLES, Column, Table
from features.contract.validate import BOOL_TOKENS, FUTURE_ALLOWED

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "data-contract.md"
GENERATED_WORLDS = """\
## Generated worlds
`healthscore generate` writes a synthetic world in this format (one file per table) plus its
ground truth (`truth.parquet`, `truth_events.csv`, which ingest ignores). Options beyond
`--accounts`, `--start`, `--days`, `--seed`, `--out` and `--format`:

- `--event-types example|FILE.yaml`: customer event types of known churn effect, emitted into
  `usage_events` next to the product's own events. `example` declares two raising churn
  (`billing.downgrade_viewed`, `data.export_all`), one lowering it (`integration.connected`) and
  two noise. A file lists entries with `name` and `churn_effect` (log-odds per unit of the
  account's propensity: positive raises churn, negative lowers it, 0 is noise) and optionally
  `rate` (events per active day at propensity 0, default 1), `spread` (default 1) and
  `timescale` (days the propensity remembers, default 60; 0 fixed), as a list or under
  `event_types:`:

  ```yaml
  event_types:
    - {name: export_data, churn_effect: 1.2, rate: 2}
    - {name: cancel_page_view, churn_effect: 0.8}
    - {name: sso_enabled, churn_effect: -1.0, timescale: 0}
  ```

  An account emits a type by its propensity (its intent) of the day; a churn decision acts on
  the intent averaged over the month up to 30 days before it, so accounts heading to churn do
  the raising types more in the weeks before they leave. A bad entry is refused naming the file,
  the entry and the field.
- `--billing mixed|monthly|annual`: each segment's own mix of monthly and yearly terms (the
  default), every account monthly, or no monthly plan.
- `--events-only`: no `tickets`, `surveys` or `touchpoints` (not connected): product events,
  billing and outcomes only.

The truth holds, per account and day, the hazards the churns and expansions were drawn from
(`path_probability` in `features.synth.generate`: what a forecaster who saw the future would
say) and the state each day's data came from. The oracle `healthscore train --truth` reports is
`oracle_probability`: the churn probability over the horizon that state gives as of the day
before the as-of date. What it reads, and how much of it the data shows:

- the contract schedule and term: shown by `subscriptions`;
- the churn log-odds of that day's health, shocks (champion left, usage or budget cut), plan and
  renewal count, and its expansion hazard: held over the horizon, and read as the features show
  them, since the data shows them only through noisy views (usage, tickets, surveys,
  touchpoints): a regression of the latent values onto each row's features, cross-fitted by
  account, its error averaged out (`training.oracle.estimate_state`);
- the event types' intent as the usage counts show it, not the latent intent: the posterior
  mean and variance of each account's intent given its counts of each declared type on its
  active days up to that day (`features.synth.intent_estimate`, a filter over the Poisson
  counts); the intent after the last day of data is held at its last estimate;
- the hidden churn risk (no table shows it) and the intent's posterior spread: averaged out.

"""
"""The page's section on `healthscore generate` worlds and their ground truth (features.synth
has no contract declarations to render it from)."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each annotated field of a class (pydantic keeps none by default)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for stmt, nxt in zip(body, body[1:] + [None], strict=True):
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) \
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) \
                and isinstance(nxt.value.value, str):
            docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _range(col: Column) -> str:
    if col.min is not None and col.max is not None:
        return f"{col.min:g} to {col.max:g}"
    if col.min is not None:
        return f">= {col.min:g}"
    if col.max is not None:
        return f"<= {col.max:g}"
    return ""


def _default(col: Column) -> str:
    if col.default_from is not None:
        return f"the row's `{col.default_from}`"
    return "" if col.default is None else repr(col.default)


def _table_section(t: Table) -> list[str]:
    facts = ["**required**" if t.required else "optional (absent: not connected)"]
    if t.key:
        facts.append("unique key: " + ", ".join(f"`{k}`" for k in t.key))
    if t.time_column:
        facts.append(f"dated by `{t.time_column}`")
    if t.references_accounts:
        facts.append("every `account_id` must exist in accounts")
    if t.extra_columns_allowed:
        facts.append("extra columns are custom attributes")
    lines = [f"### `{t.name}`", "", t.description, "", "; ".join(facts) + ".", "",
             "| column | type | must be present | may be empty | allowed values | range | "
             "default if absent | description |",
             "|---|---|---|---|---|---|---|---|"]
    for c in t.columns:
        future = " May lie in the future." if (t.name, c.name) in FUTURE_ALLOWED else ""
        lines.append("| " + " | ".join(_cell(v) for v in (
            f"`{c.name}`", c.type, "yes" if c.required else "no",
            "yes" if c.nullable else "no",
            ", ".join(c.allowed) if c.allowed else "", _range(c),
            _default(c), c.description + future)) + " |")
    return lines + [""]


def _policies() -> list[str]:
    docs = field_docs(IngestConfig)
    defaults = IngestConfig()
    lines = ["| setting | default | meaning |", "|---|---|---|"]
    for name in IngestConfig.model_fields:
        lines.append(f"| `ingest.{name}` | `{getattr(defaults, name)!r}` | "
                     f"{_cell(docs.get(name, ''))} |")
    return lines


def _mapping_keys() -> list[str]:
    lines = ["| key | meaning |", "|---|---|"]
    for prefix, cls in (("sources.<name>.", SourceSpec), ("tables.<table>.", TableMapping),
                        ("tables.<table>.join[].", JoinSpec)):
        docs = field_docs(cls)
        for name, info in cls.model_fields.items():
            key = info.alias or name
            lines.append(f"| `{prefix}{key}` | {_cell(docs.get(name, ''))} |")
    return lines


def render() -> str:
    true = ", ".join(f"`{k}`" for k, v in BOOL_TOKENS.items() if v)
    false = ", ".join(f"`{k}`" for k, v in BOOL_TOKENS.items() if not v)
    future = ", ".join(f"`{t}.{c}`" for t, c in sorted(FUTURE_ALLOWED))
    lines = [
        "# HealthScore data contract",
        "",
        "<!-- Generated from features/contract/tables.py by `python -m features.contract.doc`: "
        "do not edit by hand. -->",
        "",
        "What `healthscore ingest DIR` accepts. The same declarations drive the validation, so "
        "this page and the code cannot disagree (a test checks it).",
        "",
        "## The folder",
        "",
        "- **One file per table**, named `<table>.csv` or `<table>.parquet` (not both). The "
        "column names are the contract's (case and surrounding blanks are ignored).",
        "- **Only `accounts` is required.** A table whose file is absent is **not connected**: "
        "it is dropped from the warehouse and every feature built from it is missing (not zero) "
        "downstream. Connect what you have.",
        "- **Extra columns of `accounts` are custom attributes**: they are kept (numbers stay "
        "numbers, yes/no columns become booleans, ISO dates become timestamps, the rest is "
        "text) and become `attr_<column>` features; a date becomes `attr_days_since_<column>`, "
        "its age in days at the as-of date (missing when the date is not before it). Extra "
        "columns of other tables are ignored with a warning.",
        "- Files that are not a contract table are reported and ignored, not fatal.",
        "- CSV: a header row, comma separated, UTF-8, LF or CRLF line ends, double quotes around "
        "fields holding commas or line breaks. An empty cell is empty (null).",
        f"- Booleans: {true} mean true and {false} mean false (any case).",
        "- Timestamps and dates: ISO 8601 (`2024-10-16`, `2024-10-16 03:00:00`, "
        "`2024-10-16T03:00:00+02:00`). Without an offset a time is UTC; with one it is "
        "converted to UTC.",
        "- A customer export with other names or shapes is connected with a column mapping "
        "(`--mapping FILE`, see below) instead of being edited.",
        "",
        "## Who is a customer when",
        "",
        "Dates decide it, never a status column. An account is **active** at an as-of date "
        "when it started on or before that day (`accounts.created_at` falls on it or earlier) "
        "and has not churned on or before it (its first `churn_events.churned_at`). So an "
        "account is scored from its signup day on (with a tenure of 0 days that day), and one "
        "whose churn is dated on the as-of day is `churned` that day: not scored as active, "
        "and not a churn label to learn from. Features as of a date read only rows dated "
        "strictly before it (`features.entities.status_at` holds the rule; scoring, training "
        "and the service all use it).",
        "",
        "## Validation",
        "",
        "Every problem is reported with the file, the row as you find it in the file (for CSV "
        "the line number, the header being line 1; for Parquet the 1-based row), the column, "
        "the problem and the value, counted per (table, column, problem) with the first "
        "`ingest.max_examples` examples.",
        "",
        "`healthscore ingest` prints the report as tables on a terminal and as one line per "
        "problem example elsewhere (a log file, CI), `--json` prints it as one JSON document, "
        "and every problem goes to `<warehouse stem>.problems.csv` beside the warehouse "
        "(`table, column, problem, action, count, file, row, value`; removed by an ingest "
        "without problems). A refused load exits with code 1.",
        "",
        "**Fatal: the load is refused and the warehouse stays exactly as it was** when a "
        "required column is missing, a value does not parse as its type, a cell that may not "
        "be empty is empty, a value is outside the allowed values or range, an `account_id` "
        "is not in `accounts`, or a timestamp lies after the time of the ingest "
        f"(except {future}, which are plans).",
        "",
        "**Data-quality problems a business lives with** follow a policy: `drop` the rows "
        "(for a churn flag: empty the disagreeing cells), `keep` them, or `fail` (refuse the "
        "load). They are counted and reported either way. Repeated keys in `accounts` are "
        "always dropped after the first (one row per account). Set them in the `ingest:` "
        "section of your config file or with `HEALTHSCORE_INGEST__<SETTING>`.",
        "",
        *_policies(),
        "",
        "## Loading",
        "",
        "A valid folder replaces the warehouse's tables in one transaction: every table is the "
        "folder's snapshot, tables absent from the folder are dropped (not connected), and a "
        "row is added to `ingest_log` (when, folder, mapping, row counts, problem counts). "
        "Ingesting the same folder again gives the same tables. If anything fails, nothing "
        "changes. Warehouse types follow the contract: text `VARCHAR`, int `BIGINT`, float "
        "`DOUBLE`, bool `BOOLEAN`, timestamp `TIMESTAMP` (UTC).",
        "",
        "Files of any size are read in chunks of `ingest.chunk_rows` rows, checked and written "
        "to a staging database in a hidden folder beside the warehouse (it needs free disk "
        "space about the size of the new tables; removed afterwards), and copied into the "
        "warehouse in that one transaction. A warehouse that cannot be written (read-only, "
        "disk full) stops the ingest with one line naming it and what happened; the previous "
        "warehouse is unchanged.",
        "",
        "## Mapping a customer export",
        "",
        "`healthscore ingest DIR --mapping FILE.yaml` reads the export's own files. The YAML "
        "names the `sources` (files relative to DIR, `../exports/x.csv` or absolute paths reach "
        "outside it; globs allowed) and, per contract table, "
        "where each column comes from: a source column or a DuckDB SQL expression over the "
        "source rows (alias `src`), e.g. `coalesce(closed_at, NULL)` or "
        "`CASE WHEN ... END`. Tables the mapping leaves out are not connected. The mapping is "
        "checked before anything runs; errors name the YAML key. Example: "
        "`features/contract/mappings/ravenstack.yaml`.",
        "",
        *_mapping_keys(),
        "",
        *GENERATED_WORLDS.rstrip("\n").split("\n"),
        "",
        "## Tables",
        "",
    ]
    for t in TABLES:
        lines += _table_section(t)
    return "\n".join(lines).rstrip() + "\n"


def write(path: Path | None = None) -> bool:
    """Write the page (default: docs/data-contract.md); True if it changed."""
    path = path or DOC_PATH
    text = render()
    if path.exists() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "--check" in args:
        current = DOC_PATH.read_text() if DOC_PATH.exists() else ""
        if current != render():
            sys.stderr.write(f"{DOC_PATH} is stale: run python -m features.contract.doc\n")
            return 1
        return 0
    changed = write()
    sys.stdout.write(f"{DOC_PATH} {'rewritten' if changed else 'up to date'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
