"""Webhook targets: a URL whose host is (or resolves to) loopback, private, link-local,
multicast, unspecified, reserved or a cloud metadata address is refused at registration (422
naming `url`) unless allow-listed; every delivery checks again and connects to the address it
checked; redirects are not followed.
"""

from __future__ import annotations

import http.server
import ipaddress
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import webhook_targets
from serving.delivery import DeliveryPolicy, DeliveryWorker
from serving.ops_store import Delivery, Webhook, add_event
from serving.store import open_store
from serving.webhook_targets import AllowList, TargetRefused, check, pin
from tests.support.service_fixtures import Receiver, free_port, service_client

NOWHERE = AllowList()
REFUSED = [
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.0.10:8080/hook", "private"),
    ("http://172.16.5.5/hook", "private"),
    ("http://127.0.0.1:9000/hook", "loopback"),
    ("http://127.8.9.10/hook", "loopback"),
    ("http://[::1]:9000/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://169.254.10.20/hook", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "metadata"),
    ("http://0.0.0.0:80/hook", "unspecified"),
    ("http://[::]/hook", "unspecified"),
    ("http://224.0.0.251/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://100.64.0.1/hook", "not a globally routable"),
    ("http://localhost:9000/hook", "loopback"),
]


@pytest.mark.parametrize("url, why", REFUSED)
def test_non_public_targets_are_refused(url, why):
    with pytest.raises(TargetRefused, match=why):
        check(url, NOWHERE)


def test_a_public_address_is_allowed():
    assert check("http://93.184.216.34/hook", NOWHERE) == [ipaddress.ip_address("93.184.216.34")]
    assert check("https://[2606:4700::1111]/hook", NOWHERE)


def test_the_allow_list_takes_addresses_networks_and_host_names(monkeypatch):
    allow = AllowList.parse(["127.0.0.1", "10.20.0.0/16", "hooks.internal"])
    assert check("http://127.0.0.1:9000/hook", allow)
    assert check("http://10.20.30.40/hook", allow)
    with pytest.raises(TargetRefused, match="private"):
        check("http://10.21.0.1/hook", allow)
    with pytest.raises(TargetRefused, match="loopback"):
        check("http://[::1]/hook", allow)  # 127.0.0.1 allowed does not allow ::1
    monkeypatch.setattr(webhook_targets, "resolve",
                        lambda host, port: [ipaddress.ip_address("10.9.9.9")])
    assert check("http://hooks.internal/h", allow)


def test_a_name_is_refused_when_any_of_its_addresses_is_forbidden(monkeypatch):
    monkeypatch.setattr(webhook_targets, "resolve", lambda host, port: [
        ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.7")])
    with pytest.raises(TargetRefused, match=r"resolves to 10\.0\.0\.7, a private address"):
        check("https://mixed.example/hook", NOWHERE)


def test_pin_connects_to_the_checked_address_and_keeps_the_host(monkeypatch):
    monkeypatch.setattr(webhook_targets, "resolve",
                        lambda host, port: [ipaddress.ip_address("93.184.216.34")])
    target = pin("https://hooks.example:8443/in?x=1", NOWHERE)
    assert target.url == "https://93.184.216.34:8443/in?x=1"
    assert target.host_header == "hooks.example:8443"
    assert target.extensions == {"sni_hostname": "hooks.example"}


@pytest.mark.parametrize("url, why", [
    ("ftp://93.184.216.34/x", "http"), ("http://xn--/", "not a valid URL"),
    ("http://[::1/", "not a valid URL"), ("http://:80/", "with a host"),
    ("http://93.184.216.34:99999/", "not a TCP port"), ("http://a..b/", "does not resolve")])
def test_a_malformed_or_non_http_url_is_refused_not_an_error(url, why):
    with pytest.raises(TargetRefused, match=why):
        check(url, NOWHERE)


# --- registration through the API -----------------------------------------------------------------

def test_registering_a_non_public_url_is_422_naming_url_and_why(world_root, tmp_path):
    refused = [("http://10.1.2.3/hook", "private"), ("http://127.0.0.1:9000/hook", "loopback"),
               ("http://[::1]:9000/hook", "loopback"), ("http://169.254.0.9/hook", "link-local"),
               ("http://169.254.169.254/latest/meta-data/", "metadata"),
               ("http://localhost:9000/hook", "loopback")]
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    with service_client(world_root, store_url, webhook_allow_hosts="[]") as c:  # public only
        for url, why in refused:
            r = c.post("/v1/webhooks", json={"url": url})
            assert r.status_code == 422, (url, r.text)
            assert "url" in r.text and why in r.text, r.text
        assert c.get("/v1/webhooks").json() == []


def test_an_allow_listed_receiver_is_accepted(world_root, tmp_path):
    with service_client(world_root, f"sqlite:///{tmp_path / 's.db'}") as c:  # 127.0.0.1 allowed
        r = c.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert r.status_code == 201, r.text
        r = c.post("/v1/webhooks", json={"url": "http://10.1.2.3/hook"})
        assert r.status_code == 422 and "private" in r.text


# --- delivery -------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    with open_store(f"sqlite:///{tmp_path / 'ops.db'}") as s:
        yield s


def add_hook(store, url: str) -> int:
    with Session(store.engine) as s, s.begin():
        h = Webhook(url=url, secret="s" * 32, event_types=[], active=True,
                    created_at=datetime.now(UTC))
        s.add(h)
        s.flush()
        return h.id


def emit(store) -> str:
    with Session(store.engine) as s, s.begin():
        return add_event(s, "calculated", "A1", {"score": 50}).uid


def delivery_of(store, uid: str) -> Delivery:
    from serving.ops_store import Event

    with Session(store.engine) as s:
        return s.scalars(select(Delivery).join(Event, Event.id == Delivery.event_id)
                         .where(Event.uid == uid)).one()


def run(worker: DeliveryWorker) -> None:
    worker.run_once(now=datetime.now(UTC) + timedelta(hours=1))


def test_a_target_that_later_resolves_to_a_private_address_is_refused_at_delivery(
        store, monkeypatch):
    answers = {"now": "127.0.0.1"}
    monkeypatch.setattr(webhook_targets, "resolve",
                        lambda host, port: [ipaddress.ip_address(answers["now"])])
    with Receiver() as rec:
        # The name resolves nowhere for real: a delivery reaches the receiver only by
        # connecting to the address the check saw.
        add_hook(store, f"http://receiver.test:{rec.port}/hook")
        worker = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0),
                                allow=AllowList.parse(["127.0.0.1"]))
        first = emit(store)
        run(worker)
        assert rec.event_ids() == [first]
        assert rec.calls[0]["headers"]["Host"] == f"receiver.test:{rec.port}"
        answers["now"] = "10.0.0.7"  # DNS changed after registration
        second = emit(store)
        run(worker)
        worker.stop()
        assert rec.event_ids() == [first]
    failed = delivery_of(store, second)
    assert failed.status == "pending" and failed.attempts == 1
    assert "target refused" in failed.last_error and "10.0.0.7" in failed.last_error
    assert delivery_of(store, first).status == "delivered"


class Redirector:
    """A receiver that answers every POST with 307 to `location`."""

    def __init__(self, location: str) -> None:
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.hits += 1
                self.send_response(307)
                self.send_header("Location", location)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_redirect_is_not_followed_and_counts_as_a_failed_attempt(store):
    with Receiver() as elsewhere:
        redirector = Redirector(elsewhere.url)
        try:
            add_hook(store, f"http://127.0.0.1:{redirector.port}/hook")
            worker = DeliveryWorker(store.engine, DeliveryPolicy(backoff=0, max_attempts=2),
                                    allow=AllowList.parse(["127.0.0.1"]))
            uid = emit(store)
            run(worker)
            assert redirector.hits == 1
            attempt = delivery_of(store, uid)
            assert attempt.status == "pending" and attempt.last_status == 307
            assert "redirects are not followed" in attempt.last_error
            run(worker)  # retried like any failure, then dead-lettered
            worker.stop()
            time.sleep(0.1)
        finally:
            redirector.close()
        assert redirector.hits == 2 and elsewhere.calls == []
    assert delivery_of(store, uid).status == "dead"
