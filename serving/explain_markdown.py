"""The explanation as Markdown: the sections the `explain` command adds to the health summary.

Owns the fixed shape appended after the rules summary (scoring/health/summary.py):

    ### Model Outlook            every model's probability (the whole sum, never per factor)
    ### Model Factors            per target, its longest horizon: Positive / Negative / Missing
                                 data / Who the customer is (context, not actionable)
    ### Peer Benchmark           each dimension's percentile in the account's peer group
    ### What Would Help          what-if suggestions, smallest first
    ### Rules and Model          the agreement check
    ### What More Data Would Add missing sources and the share of the weight they would add

Headings and sentences come from wording.yaml (`explain` section); factors show their rank and
direction, never probability points. Pure: renders a HealthAnalysis, computes nothing.
"""

from __future__ import annotations

from serving.explain_words import ExplainWords, load_explain_words
from serving.schemas.explanation import Factor, HealthAnalysis, ModelExplanation


def _heading(words: ExplainWords, key: str) -> str:
    return f"### {words.get(f'headings.{key}')}"


def _factor_lines(factors: list[Factor], target: str, words: ExplainWords) -> list[str]:
    if not factors:
        return [f"- {words.get('factor.none')}"]
    return [f"- #{f.rank} {f.text} — {words.fill(f'factor.{f.direction}', target=target)}"
            for f in factors]


def _model_block(m: ModelExplanation, words: ExplainWords) -> list[str]:
    target = str(words.get(f"targets.{m.target}"))
    lines = [words.fill("factor.group_title", Target=target.capitalize(), target=target,
                        horizon=m.horizon, probability=m.probability)]
    for key, factors in (("positive", m.positive), ("negative", m.negative),
                         ("missing_title", m.missing), ("profile_title", m.profile)):
        lines.append(f"_{words.get(f'factor.{key}')}:_")
        lines += _factor_lines(factors, target, words)
    return lines


def headline_models(analysis: HealthAnalysis) -> list[ModelExplanation]:
    """Per target, the model of its longest horizon (the one a CSM plans against)."""
    out: dict[str, ModelExplanation] = {}
    for m in analysis.models:
        if m.target not in out or m.horizon > out[m.target].horizon:
            out[m.target] = m
    return [out[t] for t in ("churn", "expansion") if t in out]


def analysis_markdown(analysis: HealthAnalysis, words: ExplainWords | None = None) -> str:
    """The model sections for one account, to append to its health summary."""
    words = words or load_explain_words()
    lines = [_heading(words, "outlook")]
    if analysis.models:
        lines += [f"- {m.text}" for m in analysis.models]
    elif analysis.account_status != "active" and analysis.probabilities_note:
        lines.append(analysis.probabilities_note[0].upper() + analysis.probabilities_note[1:] + ".")
    else:
        lines.append(str(words.get("outlook.unavailable")))
    if analysis.models:
        lines += ["", _heading(words, "factors")]
        for i, m in enumerate(headline_models(analysis)):
            lines += ([""] if i else []) + _model_block(m, words)
    lines += ["", _heading(words, "peers")]
    peer_lines = [f"- {d.text}" for d in analysis.dimensions if d.text]
    lines += peer_lines if analysis.peers is not None and peer_lines else [
        str(words.get("peers.no_peers"))]
    if analysis.models:
        lines += ["", _heading(words, "what_if")]
        lines += [f"- {w.text}" for w in analysis.what_if] or [str(words.get("what_if.none"))]
    lines += ["", _heading(words, "agreement"), analysis.agreement.text]
    if analysis.missing:
        lines += ["", _heading(words, "missing")]
        lines += [f"- {m.text}" for m in analysis.missing]
    return "\n".join(lines) + "\n"
