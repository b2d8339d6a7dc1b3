"""The dashboard in a real browser against a real `bentoml serve`: sign in, the portfolio
(filter, sort, search, CSV export), an account (resolve an alert, a manual score set and ended,
a what-if), settings (a weight changed with the preview; a reader cannot save), and no request
to any host but the service on any page, `/v1/docs` included."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from tests.browser.conftest import shot, sign_in
from tests.support.service_fixtures import ADMIN_KEY

# One server and one browser for the module: its tests stay on one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("browser")]


def cells(pg: Any, col: str) -> list[str]:
    return pg.locator(f'table.accounts tbody td[data-col="{col}"]').all_inner_texts()


def test_sign_in_then_the_portfolio_with_its_charts(page, served):
    page.goto("/")
    assert "/signin" in page.url and page.locator("table.accounts").count() == 0
    page.get_by_label("API key").fill("hs_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That API key is not valid."
    shot(page, "signin")
    sign_in(page, served.keys["reader"])
    assert page.locator('[data-kpi="accounts"]').inner_text().isdigit()
    for chart in ("band-donut", "score-over-time", "churn-hist", "expansion-hist"):
        page.wait_for_selector(f"#{chart} .main-svg")
    assert page.locator("table.accounts tbody tr").count() > 0
    shot(page, "portfolio")
    # Keyboard first: the first Tab lands on the skip link.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"


def test_filter_sort_search_and_export_exactly_the_rows(page, served):
    sign_in(page, served.keys["reader"])
    band = page.locator("#f-band option").nth(1).inner_text()
    page.select_option("#f-band", band)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r".*band=.*"))
    assert set(cells(page, "band")) == {band}
    total = int(page.locator("#total").inner_text())
    shot(page, "portfolio-filtered")

    page.locator('a[data-sort="churn"]').click()
    page.wait_for_url(re.compile(r".*sort=churn.*"))
    page.locator('a[data-sort="churn"]').click()  # again: descending
    page.wait_for_url(re.compile(r".*order=desc.*"))
    churn = [float(t.rstrip("%")) for t in cells(page, "churn") if t != "–"]
    assert churn == sorted(churn, reverse=True)
    assert "band=" in page.url  # the filter stays in the URL (bookmarkable)

    with page.expect_download() as done:
        page.locator("#export").click()
    rows = list(csv.DictReader(io.StringIO(open(done.value.path()).read())))
    assert len(rows) == total and {r["band"] for r in rows} == {band}
    shown = page.locator("table.accounts tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.account)")
    assert [r["account_id"] for r in rows[:len(shown)]] == shown

    name = page.locator("table.accounts tbody th a").first.inner_text()
    part = name[: max(3, len(name) // 2)]
    page.goto("/")
    page.get_by_label("Name").fill(part)
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url(re.compile(r".*q=.*"))
    names = page.locator("table.accounts tbody th a").all_inner_texts()
    assert names and all(part.lower() in n.lower() for n in names)
    shot(page, "portfolio-search")


def test_the_portfolio_fits_a_phone(browser, served):
    context = browser.new_context(base_url=served.base, viewport={"width": 390, "height": 844})
    pg = context.new_page()
    sign_in(pg, served.keys["reader"])
    wide = pg.evaluate("""[...document.querySelectorAll('body *')]
        .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1
                && !el.closest('.table-wrap'))
        .map(el => el.tagName + '.' + el.className + '#' + el.id).slice(0, 8)""")
    assert not wide, f"wider than the phone: {wide}"
    # and the page itself does not pan sideways (the table scrolls inside its own box)
    assert pg.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(pg, "portfolio-phone")
    context.close()


def _account_with_alert(served) -> str:
    first = served.client.get("/v1/scores", params={"pageSize": 1, "sort": "score"},
                              headers={"X-API-Key": ADMIN_KEY}).json()["items"][0]["accountId"]
    served.client.post("/v1/createAlert", json={"accountId": first, "message": "call them",
                                                "severity": "high"},
                       headers={"X-API-Key": ADMIN_KEY})
    return first


def test_an_account_resolve_an_alert_set_and_end_a_manual_score(page, served):
    account = _account_with_alert(served)
    sign_in(page, served.keys["writer"])
    page.goto("/")
    page.locator(f'a[href="/accounts/{account}"]').first.click()
    page.wait_for_selector("html[data-ready]")
    assert page.locator("[data-score]").inner_text()
    page.wait_for_selector("#history .main-svg")
    assert page.locator("#factors-h").is_visible() and page.locator("#timeline-h").is_visible()
    shot(page, "account")

    alert = page.locator("li[data-alert]").filter(has_text="call them").first
    alert_id = alert.get_attribute("data-alert")
    alert.get_by_label("Resolution").fill("called, renewal on track")
    alert.get_by_role("button", name="Resolve").click()
    page.wait_for_selector(".notice")
    assert page.locator(f'li[data-alert="{alert_id}"]').count() == 0

    page.get_by_label("Score (0–100)").fill("88")
    page.get_by_label("Reason").fill("exec sponsor confirmed the renewal")
    page.get_by_role("button", name="Set manual score").click()
    page.wait_for_selector("[data-manual]")
    assert page.locator("[data-score]").inner_text() == "88.0"
    shot(page, "account-manual-score")
    page.get_by_role("button", name="End manual score now").click()
    page.wait_for_selector(".notice")
    assert page.locator("[data-manual]").count() == 0


def test_a_what_if_on_an_account(page, served):
    sign_in(page, served.keys["reader"])
    page.locator("table.accounts tbody th a").first.click()
    page.wait_for_selector("html[data-ready]")
    page.get_by_text("Change actionable inputs").click()
    page.locator('input[name="f_logins_30d"]').fill("200")
    page.locator('input[name="f_active_days_30d"]').fill("30")
    page.get_by_role("button", name="Run what-if").click()
    page.wait_for_selector("[data-whatif-result]")
    assert "→" in page.locator("[data-whatif-result]").inner_text()
    shot(page, "account-what-if")


def test_change_a_weight_with_the_preview_then_save(page, served):
    sign_in(page, served.keys["writer"], "/settings")
    before = page.locator("table.versions tbody tr").count()
    weight = page.get_by_label("Usage")
    weight.fill(str(float(weight.input_value()) * 4 + 1))
    page.locator("#w-reason").fill("usage matters more this quarter")
    page.locator("#weights-h ~ form button", has_text="Preview").click()
    page.wait_for_selector("[data-preview]")
    assert re.search(r"\d+ of \d+ accounts would change band",
                     page.locator("[data-preview]").inner_text())
    shot(page, "settings-preview")
    page.get_by_role("button", name="Save as a new rules version").click()
    page.wait_for_selector(".notice")
    assert "saved" in page.locator(".notice").inner_text()
    rows = page.locator("table.versions tbody tr")
    assert rows.count() == before + 1
    assert "csm-writer" in rows.first.inner_text() and "weights" in rows.first.inner_text()
    shot(page, "settings-saved")


def test_change_a_band_threshold_with_the_preview_then_save(page, served):
    sign_in(page, served.keys["writer"], "/settings")
    page.locator("#bands-0-min").fill("78")
    page.locator("#bands-1-max").fill("77")
    page.locator("#t-reason").fill("champions start lower")
    page.locator("#thr-h ~ form button", has_text="Preview").click()
    page.wait_for_selector("[data-preview]")
    assert page.locator("#bands-0-min").input_value() == "78"
    page.get_by_role("button", name="Save as a new rules version").click()
    page.wait_for_selector(".notice")
    first = page.locator("table.versions tbody tr").first.inner_text()
    assert "thresholds" in first and "champions start lower" in first
    assert page.locator("#bands-0-min").input_value() == "78"
    page.set_viewport_size({"width": 390, "height": 844})  # phone width: nothing sideways
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "settings-thresholds-phone")


def test_a_reader_cannot_save_settings(page, served):
    sign_in(page, served.keys["reader"], "/settings")
    assert page.locator('form[action="/settings/save"]').count() == 0
    assert page.locator('form[action="/settings/preview"]').count() == 0
    csrf = page.locator('form[action="/signout"] input[name="csrf"]').input_value()
    r = page.request.post("/settings/save", form={"csrf": csrf, "kind": "weights",
                                                   "profile": "default", "w_usage": "9"})
    assert r.status == 403
    shot(page, "settings-reader")


def test_segments_report_and_docs_load_nothing_from_outside(page, served):
    sign_in(page, served.keys["reader"], "/segments")
    page.wait_for_selector("#band-mix .main-svg")
    shot(page, "segments")
    page.goto("/report")
    assert page.locator(".kpi").count() >= 4
    page.emulate_media(media="print")
    assert not page.locator("header.top").is_visible()
    shot(page, "report-print")
    page.emulate_media(media="screen")
    page.goto("/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    shot(page, "api-docs")
    for path in ("/static_content/index.css", "/docs.json", "/assets/index.js"):
        assert page.goto(path).status == 404
    for path in ("/metrics", "/livez", "/readyz", "/schema.json"):  # BentoML's own: no page
        r = page.request.get(path)
        assert r.status == 200 and "text/html" not in r.headers["content-type"], path
    # page's fixture asserts that no request of this test went to another host
