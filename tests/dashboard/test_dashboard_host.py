"""The hosts and origins the dashboard serves, proxy headers, and the security headers, through a
real uvicorn where the network matters: a DNS-rebinding page (``Host: evil.example`` from a loopback
peer) gets nothing, an action needs a served ``Origin``, and a forwarded address never makes a
client loopback."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator

import httpx
import pytest
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from jobqueue import product_embedding_queue as embeddings
from jobqueue.dashboard import create_app
from jobqueue.dashboard.headers import SECURITY_HEADERS
from jobqueue.dashboard.origins import Origin, Served, host_name, parse_origin
from tests.support.dashboard import SEEN_CLIENT, ShowClient, serving
from tests.support.waiting import ROOT, free_port

PAUSE = "/api/queues/product-embedding/pause"
NO_CREDENTIALS = {"token": "", "user": "", "password": ""}  # loopback mode, whatever the environment says


def csrf_of(page: str) -> str:
    return re.search(r'name="jq-csrf" content="([0-9a-f]+)"', page).group(1)


@pytest.fixture(autouse=True)
def _no_allowed_hosts_or_origins(monkeypatch):
    monkeypatch.delenv("JOBQUEUE_DASHBOARD_ALLOWED_HOSTS", raising=False)
    monkeypatch.delenv("JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS", raising=False)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("LocalHost", "localhost"),
        ("[::1]:9000", "::1"),
        ("evil.example", "evil.example"),
        ("[evil.example]", None),
        ("127.0.0.1:80x", None),
        ("evil.example@127.0.0.1", None),
        ("", None),
    ],
)
def test_host_name_reads_a_host_header_and_refuses_malformed_ones(header, name):
    assert host_name(header) == name


def test_served_hosts_are_loopback_names_and_the_allowed_ones_on_any_port():
    served = Served.parse("ops.example.com, [fe80::1]", "https://ops2.example.com/")
    for header in ("localhost", "localhost:1", "127.0.0.1:8080", "127.9.9.9", "[::1]:8080", "ops.example.com:8443"):
        assert served.host_problem(header, loopback_mode=True) is None, header
    assert served.host_problem("[fe80::1]:80", loopback_mode=False) is None
    for header in ("evil.example", "0.0.0.0:8080", "localhost.evil.example", "ops2.example.com", None):
        assert "refused" in served.host_problem(header, loopback_mode=True), header
    assert served.origins == {Origin("https", "ops2.example.com", 443)}
    assert parse_origin("null") is None and parse_origin("file:///x") is None
    assert parse_origin("HTTP://[::1]:80/x?y") == Origin("http", "::1", 80)
    with pytest.raises(ValueError, match=re.escape("JOBQUEUE_DASHBOARD_ALLOWED_HOSTS: 'ops.example.com:8443'")):
        Served.parse("ops.example.com:8443")
    with pytest.raises(
        ValueError, match=re.escape("JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS: 'https://ops.example.com/admin'")
    ):
        Served.parse((), ["https://ops.example.com/admin"])
    with pytest.raises(ValueError, match="ALLOWED_ORIGINS"):
        create_app(allowed_origins="ops.example.com")  # a host name, not an origin: refused at once


async def test_a_dns_rebinding_page_gets_nothing_in_loopback_mode():
    """The page of evil.example, its name re-pointed at 127.0.0.1, reads / and POSTs with its own
    Host and Origin: the peer is loopback, the host is not."""
    async with serving(create_app(**NO_CREDENTIALS)) as url, httpx.AsyncClient(base_url=url) as c:
        token = csrf_of((await c.get("/")).text)  # even knowing the token does not help
        evil = {"Host": "evil.example", "Origin": "http://evil.example", "X-CSRF-Token": token}
        page = await c.get("/", headers={"Host": "evil.example"})
        api = await c.get("/api/queues", headers={"Host": "evil.example:8080"})
        pause = await c.post(PAUSE, headers=evil)
        for name in ("localhost", "127.0.0.1", "127.0.0.2", "[::1]"):
            assert (await c.get("/api/queues", headers={"Host": f"{name}:8080"})).status_code == 200, name
    assert (page.status_code, api.status_code, pause.status_code) == (421, 421, 421)
    assert not await embeddings.is_paused()
    assert page.headers["content-type"] == "text/plain; charset=utf-8"
    assert page.text.count("\n") == 1 and "jq-csrf" not in page.text
    assert page.text.startswith("refused: Host 'evil.example' is not a loopback name")
    assert "JOBQUEUE_DASHBOARD_ALLOWED_HOSTS" in page.text and "JOBQUEUE_DASHBOARD_TOKEN" in page.text


async def test_an_action_from_another_origin_is_refused_even_with_a_loopback_host():
    async with serving(create_app(**NO_CREDENTIALS)) as url, httpx.AsyncClient(base_url=url) as c:
        token = {"X-CSRF-Token": csrf_of((await c.get("/")).text)}
        refused = {
            "Origin": await c.post(PAUSE, headers={**token, "Origin": "http://evil.example"}),
            "Referer": await c.post(PAUSE, headers={**token, "Referer": "http://evil.example/attack"}),
            "null": await c.post(PAUSE, headers={**token, "Origin": "null"}),
        }
        for what, response in refused.items():
            assert response.status_code == 403, what
            assert response.json()["error"].startswith("cross-origin request refused"), what
        assert "JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS" in refused["Origin"].json()["error"]
        assert not await embeddings.is_paused()
        # The page's own origin, however it names loopback; a script (no Origin, no Referer) with the token.
        assert (await c.post(PAUSE, headers={**token, "Origin": url})).status_code == 200
        assert (await c.post(PAUSE, headers={**token, "Referer": "http://localhost:1/#/queue"})).status_code == 200
        assert (await c.post(PAUSE, headers=token)).status_code == 200
        assert (await c.post(PAUSE, headers={"Origin": url})).status_code == 403  # the token is still needed
    assert await embeddings.is_paused()


async def test_allowed_origins_and_hosts_admit_a_dashboard_behind_a_proxy(monkeypatch):
    """With credentials behind a proxy that rewrites Host to 127.0.0.1:8000, the browser's origin is
    the proxy's: admitted only once configured, exactly."""
    auth = ("ops", "pw")
    async with serving(create_app(user="ops", password="pw")) as url, httpx.AsyncClient(base_url=url, auth=auth) as c:
        token = {"X-CSRF-Token": csrf_of((await c.get("/")).text)}
        before = await c.post(PAUSE, headers={**token, "Origin": "https://ops.example.com"})
    assert before.status_code == 403 and not await embeddings.is_paused()
    monkeypatch.setenv("JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS", "https://ops.example.com, http://10.0.0.5:8000")
    async with serving(create_app(user="ops", password="pw")) as url, httpx.AsyncClient(base_url=url, auth=auth) as c:
        token = {"X-CSRF-Token": csrf_of((await c.get("/")).text)}
        for origin in ("https://ops.example.com:8443", "http://ops.example.com", "http://10.0.0.5"):
            assert (await c.post(PAUSE, headers={**token, "Origin": origin})).status_code == 403, origin
        assert (await c.get("/api/queues", headers={"Host": "anything.example"})).status_code == 200
        assert (await c.post(PAUSE, headers={**token, "Origin": "https://ops.example.com"})).status_code == 200
    assert await embeddings.is_paused()

    # Allowed hosts: any origin on them is served, and with credentials too, no other Host is.
    app = create_app(user="ops", password="pw", allowed_hosts=["ops.example.com"], allowed_origins=[])
    async with serving(app) as url, httpx.AsyncClient(base_url=url, auth=auth) as c:
        token = {"X-CSRF-Token": csrf_of((await c.get("/")).text)}
        other = await c.get("/api/queues", headers={"Host": "dashboard:8000"})
        assert other.status_code == 421 and "JOBQUEUE_DASHBOARD_ALLOWED_HOSTS" in other.text
        proxied = {"Host": "ops.example.com", "Origin": "https://ops.example.com:8443"}
        assert (await c.post("/api/queues/product-embedding/resume", headers={**token, **proxied})).status_code == 200
    assert not await embeddings.is_paused()


async def test_loopback_mode_serves_an_allowed_host_name():
    app = create_app(**NO_CREDENTIALS, allowed_hosts="dash.internal", allowed_origins="")
    async with serving(app) as url, httpx.AsyncClient(base_url=url, headers={"Host": "dash.internal:8080"}) as c:
        token = {"X-CSRF-Token": csrf_of((await c.get("/")).text), "Origin": "http://dash.internal:8080"}
        assert (await c.post(PAUSE, headers=token)).status_code == 200
        assert (await c.get("/", headers={"Host": "evil.example"})).status_code == 421


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "127.0.0.1"},
        {"X-Forwarded-For": "203.0.113.7"},
        {"Forwarded": "for=127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
        {"X-Forwarded-Host": "localhost"},
    ],
)
async def test_a_forwarded_request_is_never_a_loopback_client(header):
    """uvicorn trusting every proxy rewrites scope["client"] from X-Forwarded-For; whatever address a
    forwarded header names, loopback mode refuses the request: the header never grants access."""
    app = ShowClient(create_app(**NO_CREDENTIALS))
    async with serving(app, proxy_headers=True, forwarded_allow_ips="*") as url, httpx.AsyncClient() as c:
        plain = await c.get(url + "/")
        forwarded = await c.get(url + "/", headers=header)
    assert plain.status_code == 200 and plain.headers[SEEN_CLIENT] == "127.0.0.1"
    assert forwarded.status_code == 401 and "jq-csrf" not in forwarded.text
    assert "JOBQUEUE_DASHBOARD_TOKEN" in forwarded.json()["error"]
    if "X-Forwarded-For" in header:  # uvicorn did rewrite the client: the app saw the header's address
        assert forwarded.headers[SEEN_CLIENT] == header["X-Forwarded-For"]


async def test_a_remote_peer_rewritten_to_loopback_by_proxy_headers_is_refused():
    """The socket peer 203.0.113.7 sends X-Forwarded-For: 127.0.0.1 to uvicorn's proxy-header
    middleware trusting every peer: the app is handed client 127.0.0.1 and still refuses."""
    app = ProxyHeadersMiddleware(ShowClient(create_app(**NO_CREDENTIALS)), trusted_hosts="*")
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as c:
        response = await c.get("/", headers={"X-Forwarded-For": "127.0.0.1"})
    assert response.headers[SEEN_CLIENT] == "127.0.0.1"
    assert response.status_code == 401 and "x-forwarded-for" in response.json()["error"]


async def test_credentials_still_work_through_a_proxy():
    app = create_app(token="tok")
    async with serving(app, proxy_headers=True, forwarded_allow_ips="*") as url, httpx.AsyncClient() as c:
        headers = {"Authorization": "Bearer tok", "X-Forwarded-For": "203.0.113.7", "Host": "ops.example.com"}
        assert (await c.get(url + "/api/queues", headers=headers)).status_code == 200
        assert (await c.post(url + PAUSE, headers=headers)).status_code == 200  # bearer: no Origin, no token


async def test_every_response_carries_the_security_headers():
    async with serving(create_app(**NO_CREDENTIALS)) as url, httpx.AsyncClient(base_url=url) as c:
        responses = [
            await c.get("/"),
            await c.get("/static/dashboard.js"),
            await c.get("/api/queues"),
            await c.get("/api/jobs/product-embedding:none"),  # 404 from an exception handler
            await c.post(PAUSE),  # 403 from the CSRF guard
            await c.get("/", headers={"Host": "evil.example"}),  # 421
            await c.get("/", headers={"X-Forwarded-For": "127.0.0.1"}),  # 401
        ]
    assert [r.status_code for r in responses] == [200, 200, 200, 404, 403, 421, 401]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value, (response.request.url, name)
    csp = responses[0].headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    assert responses[0].headers["x-frame-options"] == "DENY"


# A peer that is not loopback needs an address that is not: only inside a network namespace of the
# test's own, where the server listens on 10.231.0.1 and the client connects from 10.231.0.2.
SERVER_IP, CLIENT_IP = "10.231.0.1", "10.231.0.2"
NETNS_CLIENT = textwrap.dedent(
    """
    import json, sys, time
    import httpx
    url = sys.argv[1]
    with httpx.Client(transport=httpx.HTTPTransport(local_address=sys.argv[2])) as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.get(url + "/static/dashboard.css")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        out = []
        for headers in ({}, {"X-Forwarded-For": "127.0.0.1", "Host": "127.0.0.1"}):
            r = client.get(url + "/", headers=headers)
            out.append({"status": r.status_code, "seen": r.headers.get("x-probe-client"), "body": r.text})
    print(json.dumps(out))
    """
)


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace")
    name = f"jq-dash-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here")
    try:
        for command in (
            ["link", "set", "lo", "up"],
            ["addr", "add", f"{SERVER_IP}/32", "dev", "lo"],
            ["addr", "add", f"{CLIENT_IP}/32", "dev", "lo"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_a_non_loopback_peer_claiming_127_0_0_1_through_uvicorn_is_refused(netns):
    """A real uvicorn with ``--forwarded-allow-ips '*'``, a real peer at 10.231.0.2 sending
    X-Forwarded-For: 127.0.0.1: uvicorn hands the app client 127.0.0.1, and the app refuses."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOBQUEUE_DASHBOARD_ALLOWED_HOSTS": ""}
    server_command = [sys.executable, "-m", "uvicorn", "--factory", "tests.support.dashboard:probe_app"]
    server_command += ["--host", SERVER_IP, "--port", str(port), "--forwarded-allow-ips", "*"]
    server_command += ["--lifespan", "off", "--log-level", "warning"]
    server = subprocess.Popen(["ip", "netns", "exec", netns, *server_command], cwd=ROOT, env=env)
    try:
        client = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", NETNS_CLIENT, f"http://{SERVER_IP}:{port}", CLIENT_IP],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert client.returncode == 0, client.stderr
    plain, forwarded = json.loads(client.stdout)
    assert (plain["status"], plain["seen"]) == (401, CLIENT_IP)
    assert (forwarded["status"], forwarded["seen"]) == (401, "127.0.0.1")  # rewritten, still refused
    assert "is not a loopback client" in forwarded["body"] and "jq-csrf" not in forwarded["body"]
