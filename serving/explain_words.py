"""The explanations' words: the `explain` section of scoring/health/wording.yaml, checked once.

Owns reading that section through the rules side's loader (`scoring.health.wording`), checking
that every key the explanation code fills is present (a missing one is an error naming the file
and the YAML path, raised at load, not half-way through an explanation) and small helpers that
fill its templates. It holds no sentence itself and computes nothing about accounts.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from features.registry import FEATURES_BY_NAME, feature
from scoring.health.profiles import REGISTRY_DIMENSION, RulesError
from scoring.health.wording import Wording, fill, load_wording

SECTION = "explain"
# Every path the code reads, so a reviewed edit that drops one fails at load.
REQUIRED: tuple[str, ...] = (
    "targets.churn", "targets.expansion", "dimensions.commercial", "dimensions.profile",
    "headings.outlook", "headings.factors", "headings.peers", "headings.what_if",
    "headings.agreement", "headings.missing",
    "outlook.line", "outlook.whole_sum", "outlook.unavailable",
    "factor.line", "factor.no_peer", "factor.missing", "factor.not_connected", "factor.features",
    "factor.raises", "factor.lowers", "factor.group_title", "factor.positive", "factor.negative",
    "factor.missing_title", "factor.profile_title", "factor.none",
    "peers.dimension", "peers.unscored", "peers.all_accounts", "peers.no_peers",
    "what_if.line", "what_if.score", "what_if.join", "what_if.none", "what_if.unavailable",
    "what_if.levers.exec_touch", "what_if.levers.check_in", "what_if.levers.close_ticket",
    "what_if.levers.close_tickets", "what_if.levers.collect_invoices",
    "what_if.levers.reactivate", "what_if.levers.adopt_features",
    "missing.not_connected", "missing.no_data", "missing.sources",
    "agreement.agree", "agreement.healthy_but_risky", "agreement.at_risk_but_safe",
    "agreement.unknown",
)
_SCORED_NAME = {v: k for k, v in REGISTRY_DIMENSION.items()}


def _lookup(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


@dataclass(frozen=True)
class ExplainWords:
    """The `explain` section plus the shared sections it reuses (factors, dimensions)."""

    wording: Wording
    data: dict[str, Any]

    def get(self, path: str) -> Any:
        try:
            return _lookup(self.data, path)
        except KeyError:
            raise RulesError(f"{self.wording.source}: {SECTION}.{path}: missing") from None

    def fill(self, path: str, **values: Any) -> str:
        return fill(str(self.get(path)), **values)

    def dimension(self, registry_dimension: str) -> str:
        """The label a CSM reads for a registry dimension: the rules score's word when it scores
        it (commercial is Value there), else this section's."""
        scored = _SCORED_NAME.get(registry_dimension)
        if scored is not None and scored in self.wording["dimensions"]:
            return self.wording.dimension(scored)
        return str(self.data["dimensions"].get(registry_dimension, registry_dimension))

    def value(self, name: str, value: Any) -> str:
        """A feature's value as the rules summary shows it (format by the registry's kind)."""
        if value is None or isinstance(value, str):
            return "n/a" if value is None else value
        return self.wording.value(feature(name).kind, value)

    def description(self, name: str) -> str:
        return feature(name).description

    def feature_sentence(self, name: str) -> str | None:
        return self.data["factor"]["features"].get(name)

    def source(self, table: str) -> dict[str, str]:
        sources = self.get("missing.sources")
        entry = sources.get(table)
        if not isinstance(entry, dict) or not {"what", "system"} <= set(entry):
            raise RulesError(f"{self.wording.source}: {SECTION}.missing.sources.{table}: needs "
                             "`what` and `system`")
        return entry


def parse_explain_words(wording: Wording) -> ExplainWords:
    """Check the `explain` section of a loaded wording file; errors name the file and path."""
    data = wording.data.get(SECTION)
    if not isinstance(data, dict):
        raise RulesError(f"{wording.source}: missing section {SECTION!r} (model explanations)")
    for path in REQUIRED:
        try:
            _lookup(data, path)
        except KeyError:
            raise RulesError(f"{wording.source}: {SECTION}.{path}: missing") from None
    for name in data["factor"]["features"]:
        if name not in FEATURES_BY_NAME:
            raise RulesError(f"{wording.source}: {SECTION}.factor.features.{name}: unknown "
                             "feature (not in the registry)")
    return ExplainWords(wording=wording, data=data)


@lru_cache(maxsize=8)
def load_explain_words(path: Path | None = None) -> ExplainWords:
    """The packaged wording file's `explain` section (or another file's); cached."""
    return parse_explain_words(load_wording(path))
