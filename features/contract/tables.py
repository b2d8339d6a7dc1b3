"""The input data contract, declared once.

Every table a customer may connect, its columns, their types, which are required and which values
are allowed. Ingestion validates against this, the docs page `docs/data-contract.md` is rendered
from it (a test checks the two agree), and the feature code reads the warehouse tables it names.
Only `accounts` is required; a table that is absent is "not connected" everywhere downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ColumnType = Literal["string", "int", "float", "bool", "date", "timestamp"]


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = True
    """A required column must be present in the file; `nullable` says whether cells may be empty."""
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    default: object | None = None
    """Value used when an optional column is absent from the file."""
    default_from: str | None = None
    """Column of the same row whose value is used when this one is absent or its cell empty
    (an account without a display name is shown by its id)."""
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    description: str
    key: tuple[str, ...] = ()
    """Columns whose combination must be unique."""
    time_column: str | None = None
    """The column that dates a row: features as of T only see rows with this strictly before T."""
    required: bool = False
    references_accounts: bool = True
    extra_columns_allowed: bool = False
    """Only `accounts` keeps extra columns: they become custom attributes."""

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(name: str, type: ColumnType, description: str, **kw: object) -> Column:
    return Column(name=name, type=type, description=description, **kw)  # type: ignore[arg-type]


SEGMENTS = ("enterprise", "mid-market", "smb")
PRIORITIES = ("low", "normal", "high", "urgent")

TABLES: tuple[Table, ...] = (
    Table(
        name="accounts",
        description="One row per customer account. Extra columns are custom attributes.",
        key=("account_id",),
        required=True,
        references_accounts=False,
        extra_columns_allowed=True,
        columns=(
            _c("account_id", "string", "Stable identifier of the account."),
            _c("name", "string", "Display name.", required=False, nullable=True,
               default_from="account_id"),
            _c("segment", "string", "Customer segment, e.g. enterprise, mid-market, smb."),
            _c("industry", "string", "Industry.", nullable=True),
            _c("region", "string", "Sales region.", nullable=True),
            _c("plan", "string", "Plan or tier.", nullable=True),
            _c("seats", "int", "Contracted seats.", nullable=True, min=0),
            _c("arr", "float", "Annual recurring revenue.", nullable=True, min=0),
            _c("created_at", "timestamp", "Signup date: the start of the relationship."),
            _c("owner", "string", "Customer-success manager who owns the account.", nullable=True),
        ),
    ),
    Table(
        name="subscriptions",
        description="Contracts; renewals happen on end dates.",
        key=("subscription_id",),
        time_column="start_date",
        columns=(
            _c("account_id", "string", "Account the subscription belongs to."),
            _c("subscription_id", "string", "Unique subscription identifier."),
            _c("start_date", "timestamp", "Start of the contract."),
            _c("end_date", "timestamp", "End of the contract; empty means open-ended.",
               nullable=True),
            _c("arr", "float", "ARR of this subscription.", min=0),
            _c("seats", "int", "Seats of this subscription.", nullable=True, min=0),
            _c("status", "string", "Status as of the export (features never read it: activity is "
               "decided by dates).", required=False, nullable=True,
               allowed=("active", "cancelled", "expired", "trial")),
            _c("auto_renew", "bool", "Renews automatically.", required=False, nullable=True),
        ),
    ),
    Table(
        name="usage_events",
        description="Product usage: one row per user, time and feature key (pre-aggregated rows "
        "carry a quantity).",
        time_column="ts",
        columns=(
            _c("account_id", "string", "Account of the user."),
            _c("user_id", "string", "User who acted. Without it (absent, or every cell empty) "
               "the features counting distinct users are missing, not constant.",
               required=False, nullable=True),
            _c("ts", "timestamp", "When it happened."),
            _c("event", "string", "Feature key, e.g. `report.export`."),
            _c("quantity", "float", "How many times (default 1).", required=False, min=0,
               default=1.0),
        ),
    ),
    Table(
        name="tickets",
        description="Support tickets.",
        key=("ticket_id",),
        time_column="created_at",
        columns=(
            _c("account_id", "string", "Account that opened the ticket."),
            _c("ticket_id", "string", "Unique ticket identifier."),
            _c("created_at", "timestamp", "When it was opened."),
            _c("resolved_at", "timestamp", "When it was resolved; empty while open.",
               nullable=True),
            _c("priority", "string", "Priority.", allowed=PRIORITIES),
            _c("escalated", "bool", "Escalated to engineering or management.", required=False,
               default=False),
            _c("reopened", "bool", "Reopened after a resolution.", required=False, default=False),
            _c("csat", "float", "Ticket CSAT 1-5.", required=False, nullable=True, min=1, max=5),
            _c("sentiment", "float", "Sentiment -1..1.", required=False, nullable=True, min=-1,
               max=1),
        ),
    ),
    Table(
        name="surveys",
        description="NPS (0-10) and CSAT (1-5) responses.",
        time_column="ts",
        columns=(
            _c("account_id", "string", "Account of the respondent."),
            _c("ts", "timestamp", "When the response was given."),
            _c("kind", "string", "Survey kind.", allowed=("nps", "csat")),
            _c("score", "float", "Score: NPS 0-10, CSAT 1-5.", min=0, max=10),
        ),
    ),
    Table(
        name="touchpoints",
        description="Meetings, QBRs, calls and emails between the vendor and the customer.",
        time_column="ts",
        columns=(
            _c("account_id", "string", "Account touched."),
            _c("ts", "timestamp", "When."),
            _c("kind", "string", "Kind.", allowed=("meeting", "qbr", "call", "email")),
            _c("direction", "string", "Who initiated.", allowed=("inbound", "outbound")),
            _c("executive", "bool", "An executive took part.", required=False, default=False),
            _c("responded", "bool", "The customer responded.", required=False, nullable=True),
        ),
    ),
    Table(
        name="invoices",
        description="Invoices and their payment.",
        key=("invoice_id",),
        time_column="issued_at",
        columns=(
            _c("account_id", "string", "Account billed."),
            _c("invoice_id", "string", "Unique invoice identifier."),
            _c("issued_at", "timestamp", "When issued."),
            _c("due_at", "timestamp", "When due."),
            _c("paid_at", "timestamp", "When paid; empty if unpaid.", nullable=True),
            _c("amount", "float", "Amount.", min=0),
            _c("status", "string", "Status.", allowed=("paid", "open", "failed")),
        ),
    ),
    Table(
        name="churn_events",
        description="Logo churn: the account stopped being a customer.",
        key=("account_id", "churned_at"),
        time_column="churned_at",
        columns=(
            _c("account_id", "string", "Account that churned."),
            _c("churned_at", "timestamp", "When."),
            _c("reason", "string", "Reason given.", required=False, nullable=True),
        ),
    ),
    Table(
        name="expansion_events",
        description="Expansion: upsell, upgrade or added seats.",
        time_column="ts",
        columns=(
            _c("account_id", "string", "Account that expanded."),
            _c("ts", "timestamp", "When."),
            _c("arr_delta", "float", "ARR added (positive).", min=0),
        ),
    ),
)

TABLES_BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}


def table(name: str) -> Table:
    try:
        return TABLES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES_BY_NAME)}") from None
