"""Playbooks: the packaged ones load, matching follows flags, bands and the optional lifecycle
stage and value tier, a custom file adds or replaces, and a bad file is named with its field."""

from __future__ import annotations

import pytest

from scoring.playbooks import (
    MatchContext,
    PlaybookError,
    load_playbooks,
    match_playbooks,
    read_playbooks,
)


def names(books):
    return [b.name for b in books]


def test_packaged_playbooks_load_sorted_by_priority():
    books = load_playbooks()
    assert len(books) >= 8
    assert [b.priority for b in books] == sorted(b.priority for b in books)


def test_matching_on_flags_and_bands():
    books = load_playbooks()
    got = names(match_playbooks(books, MatchContext(frozenset({"usage_drop"}), "At Risk")))
    assert got[:2] == ["at-risk-rescue", "usage-recovery"]
    assert "champion-advocacy" not in got
    assert names(match_playbooks(books, MatchContext(frozenset(), "Champion"))) == \
        ["champion-advocacy"]
    # Both criteria of a playbook must hold: no_exec_touch alone on a healthy account is not it.
    assert "exec-touch" not in names(match_playbooks(
        books, MatchContext(frozenset({"no_exec_touch"}), "Healthy")))
    assert "exec-touch" in names(match_playbooks(
        books, MatchContext(frozenset({"no_exec_touch"}), "Needs Attention")))


def test_lifecycle_and_tier_are_optional_inputs():
    books = load_playbooks()
    without = names(match_playbooks(books, MatchContext(frozenset(), "At Risk")))
    assert "high-value-at-risk" not in without and "onboarding-check" not in without
    with_both = names(match_playbooks(books, MatchContext(frozenset(), "At Risk",
                                                          lifecycle="onboarding", tier="high")))
    assert with_both[0] == "high-value-at-risk"
    assert "onboarding-check" in with_both


def test_context_of_a_score_row():
    ctx = MatchContext.of_score({"flags": [{"code": "payment_issue"}], "band": "Healthy"})
    assert ctx.flags == {"payment_issue"} and ctx.band == "Healthy" and ctx.tier is None


def test_custom_file_adds_and_replaces(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("playbooks:\n"
                    "  - name: usage-recovery\n    title: Our own usage play\n    priority: 1\n"
                    "    when: {flags: [usage_drop]}\n    actions: [{title: Call them}]\n"
                    "  - name: gold-care\n    title: Gold tier care\n"
                    "    when: {tiers: [gold]}\n"
                    "    actions: [{title: Send the gift, due_days: 1}]\n")
    books = load_playbooks(path)
    mine = {b.name: b for b in books}
    assert mine["usage-recovery"].title == "Our own usage play"
    assert "gold-care" in mine and "renewal-prep" in mine


@pytest.mark.parametrize(("text", "field"), [
    ("playbooks:\n  - name: x\n    title: A title\n    when: {flags: [nope]}\n"
     "    actions: [{title: Do it}]\n", "playbooks.0.when"),
    ("playbooks:\n  - name: x\n    title: A title\n    when: {bands: [At Risk]}\n"
     "    actions: [{title: Do it, due_days: -1}]\n", "playbooks.0.actions.0.due_days"),
    ("playbooks:\n  - name: x\n    title: A title\n    when: {}\n    actions: []\n",
     "playbooks.0.actions"),
    ("playbooks:\n  - name: x\n    title: A title\n    when: {}\n    actions: [{title: ab1}]\n"
     "    colour: red\n", "playbooks.0.colour"),
])
def test_a_bad_file_is_named_with_its_field(tmp_path, text, field):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PlaybookError) as err:
        read_playbooks(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_a_missing_or_unparsable_file(tmp_path):
    with pytest.raises(PlaybookError, match="no such playbook file"):
        read_playbooks(tmp_path / "none.yaml")
    (tmp_path / "x.yaml").write_text("playbooks: [\n")
    with pytest.raises(PlaybookError, match="not valid YAML"):
        read_playbooks(tmp_path / "x.yaml")
