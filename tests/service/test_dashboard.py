"""The dashboard over the ASGI app (no server process): access control, the session cookie,
CSRF on every POST, role separation, the CSV export's rows, and no outside host in any page."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.support.service_fixtures import service_client

# One service for the module: its tests stay on one xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dashboard")]


@pytest.fixture(scope="module")
def client(world_root, tmp_path_factory):
    store = tmp_path_factory.mktemp("dash") / "store.db"
    with service_client(world_root, f"sqlite:///{store}") as c:
        keys = {role: c.post("/v1/keys", json={"name": f"dash-{role}", "role": role}).json()["key"]
                for role in ("reader", "writer")}
        c.headers.pop("X-API-Key")
        c.keys = keys  # type: ignore[attr-defined]
        c.store = store  # type: ignore[attr-defined]
        yield c


def sign_in(c, key: str) -> None:
    c.cookies.clear()
    page = c.get("/signin")
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    r = c.post("/signin", data={"key": key, "token": token, "next": "/"},
               follow_redirects=False)
    assert r.status_code == 303, r.text


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_without_a_session_every_page_is_the_sign_in_page(client):
    client.cookies.clear()
    for path in ("/", "/accounts/x", "/segments", "/report", "/settings", "/export.csv",
                 "/static_content/index.css", "/docs.json", "/anything"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin"), path
        r = client.get(path)
        assert "API key" in r.text and "Accounts" not in r.text, path
    r = client.post("/settings/save", data={"kind": "weights", "w_usage": "9"})
    assert r.status_code == 401 and "Sign in" in r.text


def test_a_wrong_key_gets_the_sign_in_page_and_no_cookie(client):
    client.cookies.clear()
    page = client.get("/signin")
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    r = client.post("/signin", data={"key": "hs_wrong", "token": token},
                    follow_redirects=False)
    assert r.status_code == 401 and "not valid" in r.text
    assert "hs_session" not in r.headers.get("set-cookie", "")
    # A forged cookie is no session either.
    client.cookies.set("hs_session", "eyJoIjoiYWJjIn0.forged.sig")
    assert client.get("/", follow_redirects=False).status_code == 303


def test_sign_in_needs_the_form_token(client):
    client.cookies.clear()
    r = client.post("/signin", data={"key": client.keys["reader"], "token": "made-up"},
                    follow_redirects=False)
    assert r.status_code == 403 and "hs_session" not in r.headers.get("set-cookie", "")


def test_the_session_cookie_is_httponly_strict_and_holds_no_key(client):
    client.cookies.clear()
    page = client.get("/signin")
    token = re.search(r'name="token" value="([^"]+)"', page.text).group(1)
    r = client.post("/signin", data={"key": client.keys["reader"], "token": token},
                    follow_redirects=False)
    cookie = [h for h in r.headers.get_list("set-cookie") if h.startswith("hs_session=")][0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert client.keys["reader"] not in cookie


def test_a_reader_sees_pages_but_no_edit_form_and_cannot_post_changes(client):
    sign_in(client, client.keys["reader"])
    home = client.get("/")
    assert home.status_code == 200 and "Accounts" in home.text
    account = re.search(r'href="/accounts/([^"]+)"', home.text).group(1)
    page = client.get(f"/accounts/{account}")
    assert page.status_code == 200
    assert "/override" not in page.text and "/resolve" not in page.text
    settings = client.get("/settings")
    assert settings.status_code == 200 and "/settings/save" not in settings.text
    assert "/settings/preview" not in settings.text
    csrf = csrf_of(home.text)
    for path, data in (("/settings/save", {"kind": "weights", "w_usage": "9"}),
                       ("/settings/preview", {"kind": "weights", "w_usage": "9"}),
                       (f"/accounts/{account}/override", {"score": "50", "reason": "xyz",
                                                          "expires": "2999-01-01T00:00"}),
                       (f"/accounts/{account}/override/end", {})):
        r = client.post(path, data={**data, "csrf": csrf})
        assert r.status_code == 403, path
    # A what-if changes nothing: a reader may run it.
    r = client.post(f"/accounts/{account}/whatif", data={"csrf": csrf, "f_open_tickets": "0"})
    assert r.status_code in (200, 422)


def test_every_post_needs_the_session_csrf_token(client):
    sign_in(client, client.keys["writer"])
    home = client.get("/")
    account = re.search(r'href="/accounts/([^"]+)"', home.text).group(1)
    data = {"score": "50", "reason": "test override", "expires": "2999-01-01T00:00"}
    assert client.post(f"/accounts/{account}/override", data=data).status_code == 403
    assert client.post(f"/accounts/{account}/override",
                       data={**data, "csrf": "wrong"}).status_code == 403
    assert client.post("/signout").status_code == 403
    ok = client.post(f"/accounts/{account}/override", data={**data, "csrf": csrf_of(home.text)},
                     follow_redirects=False)
    assert ok.status_code == 303
    page = client.get(f"/accounts/{account}")
    assert "Manual score by dash-writer" in page.text
    end = client.post(f"/accounts/{account}/override/end", data={"csrf": csrf_of(page.text)},
                      follow_redirects=False)
    assert end.status_code == 303
    assert "Manual score by" not in client.get(f"/accounts/{account}").text


def test_the_csv_export_holds_exactly_the_filtered_rows(client):
    sign_in(client, client.keys["reader"])
    home = client.get("/")
    band = re.search(r'<option >([^<]+)</option>', home.text.split('id="f-band"')[1]).group(1)
    for query in ({"band": band}, {"band": band, "sort": "churn", "order": "desc"},
                  {"q": "a"}, {}):
        rows = list(csv.DictReader(io.StringIO(client.get("/export.csv", params=query).text)))
        page = client.get("/", params=query).text
        total = int(re.search(r'<span id="total">(\d+)</span>', page).group(1))
        assert len(rows) == total, query
        if "band" in query:
            assert rows and {r["band"] for r in rows} == {band}
        if query.get("sort") == "churn":
            churn = [float(r["churn"]) for r in rows if r["churn"]]
            assert churn == sorted(churn, reverse=True)
        if "q" in query:
            assert all("a" in (r["name"] + r["account_id"]).lower() for r in rows)
        shown = re.findall(r'<tr data-account="([^"]+)">', page)
        assert [r["account_id"] for r in rows[:len(shown)]] == shown


def test_the_lifecycle_filter_keeps_the_stage_the_lifecycle_resource_gives(client):
    stages = client.get("/v1/portfolio/lifecycle", params={"limit": 10_000},
                        headers={"X-API-Key": client.keys["reader"]}).json()
    stage, count = max(stages["stages"].items(), key=lambda kv: kv[1])
    sign_in(client, client.keys["reader"])
    assert f"<option >{stage}</option>" in client.get("/").text.split('id="f-lifecycle"')[1]
    rows = list(csv.DictReader(io.StringIO(
        client.get("/export.csv", params={"lifecycle": stage}).text)))
    assert len(rows) == count and {r["lifecycle"] for r in rows} == {stage}
    assert {r["account_id"] for r in rows} == {
        i["accountId"] for i in stages["items"] if i["stage"] == stage}


def test_pages_load_nothing_from_another_host(client):
    sign_in(client, client.keys["writer"])
    home = client.get("/")
    account = re.search(r'href="/accounts/([^"]+)"', home.text).group(1)
    for path in ("/", f"/accounts/{account}", "/segments", "/report", "/settings", "/signin",
                 "/v1/docs"):
        r = client.get(path)
        assert r.status_code == 200, path
        outside = re.findall(r'(?:src|href)="(https?://[^"]+|//[^"]+)"', r.text)
        assert not outside, (path, outside)
        if path != "/v1/docs":
            assert "default-src 'self'" in r.headers["content-security-policy"]
    docs = client.get("/v1/docs").text
    assert "/v1/docs/assets/swagger-ui-bundle.js" in docs and '"validatorUrl": null' in docs
    assert client.get("/v1/docs/assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static-lib/plotly.min.js").status_code == 200
    assert client.get("/v1/redoc").status_code == 404
    # What BentoML itself serves beside the mounts: no page, nothing that names another host.
    client.cookies.clear()
    for path in ("/livez", "/readyz", "/healthz", "/schema.json"):  # /metrics: in tests/browser
        r = client.get(path, follow_redirects=False)
        assert "text/html" not in r.headers.get("content-type", ""), path
        assert not re.search(r"(?:src|href)=|googletagmanager", r.text), path
    for path in ("/", "/docs", "/docs.json", "/static_content/swagger-ui.css", "/assets/x.js"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin"), path


def last_audit(client) -> tuple[int, str, str, dict]:
    """The newest audit row of the module's store: (id, actor, action, detail)."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{client.store}")
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT id, actor, action, detail FROM audit_log "
                                       "ORDER BY id DESC LIMIT 1")).one()
    finally:
        engine.dispose()
    detail = row.detail if isinstance(row.detail, dict) else json.loads(row.detail)
    return row.id, row.actor, row.action, detail


def save_form_of(html: str) -> dict[str, str]:
    """The hidden fields of the preview's save form: what the page would post to save."""
    form = re.search(r'<form method="post" action="/settings/save">(.*?)</form>', html, re.S)
    assert form, "no save form in the preview"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(1)))


def test_change_a_band_threshold_with_the_preview_then_save(client):
    sign_in(client, client.keys["writer"])
    page = client.get("/settings")
    assert re.search(r'id="bands-0-min" name="bands.0.min" type="number"[^>]* value="81"',
                     page.text)
    r = client.post("/settings/preview", data={
        "csrf": csrf_of(page.text), "profile": "default", "kind": "thresholds",
        "bands.0.min": "76", "bands.1.max": "75", "reason": "champions start lower"})
    assert r.status_code == 200, r.text
    assert re.search(r"<strong data-changed>\d+</strong> of \d+ accounts would change band",
                     r.text)
    form = save_form_of(r.text)
    assert form["bands.0.min"] == "76" and form["bands.1.max"] == "75"
    assert form["reason"] == "champions start lower"
    before = last_audit(client)[0]
    saved = client.post("/settings/save", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    at, actor, action, detail = last_audit(client)
    assert at > before and actor == "dash-writer" and action == "config.thresholds"
    assert set(detail) == {"bands", "version"}  # only what changed
    assert detail["bands"][0] == {"name": "Champion", "min": 76, "max": 100}
    after = client.get("/settings")
    assert re.search(r'id="bands-0-min"[^>]* value="76"', after.text)
    assert "champions start lower" in after.text


def test_change_a_flag_threshold(client):
    sign_in(client, client.keys["writer"])
    page = client.get("/settings")
    saved = client.post("/settings/save", data={
        "csrf": csrf_of(page.text), "profile": "default", "kind": "thresholds",
        "flags.usage_drop.pct_change_below": "-45", "flags.escalation.enabled": ["false"],
        "reason": "fewer usage-drop flags"}, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    _, actor, _, detail = last_audit(client)
    assert actor == "dash-writer"
    assert detail["flags"] == {"usage_drop": {"pct_change_below": -45.0},
                               "escalation": {"enabled": False}}
    after = client.get("/settings").text
    assert re.search(r'id="flags-usage_drop-pct_change_below"[^>]* value="-45.0"', after)
    assert not re.search(r'id="flags-escalation-enabled"[^>]*checked', after)


@pytest.mark.parametrize(("field", "value", "named"), [
    ("bands.0.max", "abc", "bands.0.max"),
    ("grades.0.min", "150", "grades.0.min"),
    ("bands.0.min", "70", "bands"),  # overlaps Healthy: the rules' own check names the field
    ("flags.usage_drop.pct_change_below", "nan", "flags.usage_drop.pct_change_below"),
])
def test_a_bad_threshold_is_a_422_naming_the_field_and_nothing_is_saved(client, field, value,
                                                                        named):
    sign_in(client, client.keys["writer"])
    page = client.get("/settings")
    before = last_audit(client)[0]
    for path in ("/settings/preview", "/settings/save"):
        r = client.post(path, data={"csrf": csrf_of(page.text), "profile": "default",
                                    "kind": "thresholds", field: value})
        assert r.status_code == 422, (path, r.text)
        assert named in r.text, (path, r.text)
    assert last_audit(client)[0] == before
    assert client.get("/settings").text.count("(active)") == 1


def test_a_reader_sees_every_threshold_but_cannot_save_one(client):
    sign_in(client, client.keys["reader"])
    page = client.get("/settings")
    assert re.search(r'<span id="bands-0-max">100</span>', page.text)
    assert 'id="flags-usage_drop-pct_change_below"' in page.text
    assert "<input" not in page.text.split("<h2 id=\"thr-h\">")[1].split("</section>")[0]
    before = last_audit(client)[0]
    r = client.post("/settings/save", data={"csrf": csrf_of(page.text), "profile": "default",
                                            "kind": "thresholds", "bands.0.min": "76"})
    assert r.status_code == 403
    assert last_audit(client)[0] == before


def test_the_templates_and_static_files_ship_with_the_package():
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["serving"]
    files = [p.relative_to(root / "serving").as_posix()
             for folder in ("templates", "static")
             for p in (root / "serving" / "dashboard" / folder).iterdir()]
    assert files
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
    assert not unshipped, f"add to [tool.setuptools.package-data] serving: {unshipped}"


def test_the_timeline_is_the_same_from_the_held_rows_and_from_the_warehouse(world_root):
    """The account page reads the rows the online path holds in memory when there are any, and
    queries the warehouse otherwise: both give the same timeline."""
    from datetime import timedelta

    import duckdb

    from features.build import warm_online
    from features.contract.warehouse import today
    from features.settings import FeatureConfig
    from serving.timeline import timeline

    con = duckdb.connect(str(world_root / "warehouse.duckdb"), read_only=True)

    class Snapshot:
        generation = 1

        @staticmethod
        def connection():
            return con

    class State:
        snapshot = Snapshot

        @staticmethod
        def known(_account):
            return None

        @staticmethod
        def derive(_key, make):
            return make()

    as_of = today(con)
    ids = [r[0] for r in con.execute("select account_id from accounts limit 5").fetchall()]
    queried = [timeline(State, a, as_of, 120) for a in ids]
    warm_online(con, FeatureConfig())
    held = [timeline(State, a, as_of, 120) for a in ids]
    con.close()
    assert held == queried
    assert any(t.logins for t in held) and any(t.items for t in held)
    assert all(t.start == as_of - timedelta(days=120) for t in held)
    assert all(d < as_of for t in held for d, _ in t.logins)
