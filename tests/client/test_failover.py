"""`mpfn.client.Client` against real routers: site order, failover on a closed port, a
503 and a timeout, a 4xx is the answer, API keys, and the entries the state records."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mpfn.client import AllRoutersFailed, Client, ClientError, RouterError
from mpfn.entrypoints import write_router
from mpfn.store import LocalStore
from tests.client.conftest import BODY, DOUBLED, Routers, entry
from tests.servers.ports import listening_socket


class Recording(httpx.HTTPTransport):
    """The default transport, noting the URL of every request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(str(request.url))
        return super().handle_request(request)


def test_the_preferred_site_answers_and_says_so(routers: Routers) -> None:
    sites = [entry("a", routers.ok.url), entry("b", routers.ok.url), entry("c", routers.ok.url)]
    with Client(sites, prefer="b") as client:
        assert [r.site for r in client.routers] == ["b", "a", "c"]
        answer = client.infer("demo", BODY)
        assert answer["outputs"][0]["data"] == DOUBLED
        assert client.last_site == "b"
        assert client.last is not None
        assert client.last.pool == "p1"
        assert client.last.route_reason  # the router's x-mpfn-route-reason
        assert client.last.failed_over == ()
        assert client.infer("demo", BODY, version="1")["outputs"][0]["data"] == DOUBLED
        metadata = client.request("GET", "/v2/models/demo")
        assert metadata.status_code == 200
        assert metadata.json()["name"] == "demo"


def test_fails_over_when_the_preferred_site_is_down(routers: Routers) -> None:
    sites = [entry("a", routers.down_url), entry("b", routers.ok.url)]
    with Client(sites, prefer="a") as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        assert client.last is not None
        assert client.last.site == "b"
        [skipped] = client.last.failed_over
        assert skipped.site == "a"
        assert skipped.why.startswith("cannot connect")


def test_fails_over_when_the_preferred_site_answers_503(routers: Routers) -> None:
    broken = httpx.post(f"{routers.broken.url}/v2/models/demo/infer", json=BODY, timeout=30)
    assert broken.status_code == 503  # what the client sees from it, too
    sites = [entry("a", routers.broken.url), entry("b", routers.ok.url)]
    with Client(sites, prefer="a") as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        assert client.last is not None
        assert client.last_site == "b"
        [skipped] = client.last.failed_over
        assert skipped.site == "a"
        assert skipped.why.startswith("503 no healthy backend")


def test_fails_over_when_the_preferred_site_times_out(routers: Routers) -> None:
    silent = listening_socket()  # accepts connections (the backlog), never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        sites = [entry("a", url), entry("b", routers.ok.url)]
        with Client(sites, timeout=1.0) as client:
            assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
            assert client.last is not None
            assert client.last.site == "b"
            assert client.last.failed_over[0].why.startswith("timed out (ReadTimeout")
    finally:
        silent.close()


def test_a_4xx_is_the_answer_and_is_not_failed_over(routers: Routers) -> None:
    transport = Recording()
    sites = [entry("a", routers.ok.url), entry("b", routers.ok.url)]
    with Client(sites, transport=transport) as client:
        with pytest.raises(RouterError) as raised:
            client.infer("nope", BODY)
        assert raised.value.status == 404
        assert raised.value.site == "a"
        assert "nope" in raised.value.message  # the router's JSON error
        assert transport.urls == [f"{routers.ok.url}/v2/models/nope/infer"]
        answer = client.request("POST", "/v2/models/nope/infer", json=BODY)
        assert answer.status_code == 404  # request() returns it
        assert client.last_site == "a"

    # A router wanting a key answers 401 without one: that is the answer too.
    transport = Recording()
    sites = [entry("k", routers.keys.url), entry("b", routers.ok.url)]
    with Client(sites, transport=transport, api_key="") as client:
        with pytest.raises(RouterError) as raised:
            client.infer("demo", BODY)
        assert raised.value.status == 401
        assert raised.value.site == "k"
        assert raised.value.route_reason == "rejected: no API key"
        assert len(transport.urls) == 1


def test_every_site_failing_is_one_error_naming_each(routers: Routers) -> None:
    sites = [entry("a", routers.down_url), entry("b", routers.broken.url)]
    with Client(sites) as client, pytest.raises(AllRoutersFailed) as raised:
        client.infer("demo", BODY)
    assert [a.site for a in raised.value.attempts] == ["a", "b"]
    message = str(raised.value)
    assert f"a ({routers.down_url}): cannot connect" in message
    assert f"b ({routers.broken.url}): 503 no healthy backend" in message
    assert client.last is None


def test_api_keys_are_sent_as_bearer_keys(
    routers: Routers, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed = entry("k", routers.keys.url, "api-key")
    with Client([keyed], api_key=routers.api_key) as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
    # An `auth: none` entry still carries a key when there is one.
    with Client([entry("k", routers.keys.url)], api_key=routers.api_key) as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
    monkeypatch.setenv("MPFN_API_KEY", routers.api_key)
    with Client([keyed]) as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED

    wrong = routers.api_key[:-4] + "AAAA"
    with Client([keyed, entry("b", routers.ok.url)], api_key=wrong) as client:
        with pytest.raises(RouterError) as raised:
            client.infer("demo", BODY)
        assert (raised.value.status, raised.value.message) == (401, "invalid API key")
        assert wrong not in str(raised.value)


def test_an_api_key_site_without_a_key_is_skipped(
    routers: Routers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MPFN_API_KEY", raising=False)
    sites = [entry("k", routers.keys.url, "api-key"), entry("b", routers.ok.url)]
    with Client(sites) as client:
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        assert client.last is not None
        assert client.last.site == "b"
        assert client.last.failed_over[0].why.startswith("cannot authenticate: needs an API key")


def test_from_state_reads_the_recorded_routers(routers: Routers, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "recorded")
    for site in (entry("b", routers.ok.url), entry("a", routers.down_url)):
        write_router(store, site)
    with Client.from_state(store) as client:
        assert [r.site for r in client.routers] == ["a", "b"]  # recorded order: by site
        assert client.infer("demo", BODY)["outputs"][0]["data"] == DOUBLED
        assert client.last_site == "b"
    with Client.from_state(store, prefer="b") as client:
        assert [r.site for r in client.routers] == ["b", "a"]
    with pytest.raises(ClientError, match="no router for site 'c'; recorded: a, b"):
        Client.from_state(store, prefer="c")
    with pytest.raises(ClientError, match="records no routers"):
        Client.from_state(LocalStore(tmp_path / "empty"))
