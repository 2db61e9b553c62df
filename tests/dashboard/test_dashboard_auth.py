"""Dashboard auth: 401 without credentials, bearer and basic auth, CSRF guard on actions,
loopback only when no credentials are configured."""

import re

import httpx
import pytest

import jobqueue
from jobqueue import product_embedding_queue as embeddings
from jobqueue.dashboard import create_app

TOKEN = "s3cret-token"


def client(app, *, auth=None, headers=None, ip="127.0.0.1", base="http://dash.test") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url=base, auth=auth, headers=headers)


def csrf_of(page: str) -> str:
    return re.search(r'name="jq-csrf" content="([0-9a-f]+)"', page).group(1)


@pytest.mark.parametrize(
    "path", ["/", "/api/queues", "/api/schedules", "/api/jobs/product-embedding:p1", "/metrics", "/static/dashboard.js"]
)
async def test_every_route_answers_401_without_credentials(path):
    async with client(create_app(token=TOKEN)) as c:
        response = await c.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="jobqueue"'
    assert response.json() == {"error": "authentication required"}


async def test_bearer_token_and_basic_auth_get_in_and_wrong_ones_do_not():
    app = create_app(token=TOKEN)
    async with client(app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.get("/api/queues")).status_code == 200
    async with client(app, auth=("anyone", TOKEN)) as c:  # browsers: the token as password
        assert (await c.get("/")).status_code == 200
    async with client(app, headers={"Authorization": "Bearer wrong"}) as c:
        assert (await c.get("/api/queues")).status_code == 401
    users = create_app(user="ops", password="pw")
    async with client(users, auth=("ops", "pw")) as c:
        assert (await c.get("/api/queues")).status_code == 200
    async with client(users, auth=("ops", "nope")) as c:
        assert (await c.get("/api/queues")).status_code == 401


async def test_half_given_credentials_are_refused():
    with pytest.raises(ValueError, match="USER and JOBQUEUE_DASHBOARD_PASSWORD"):
        create_app(user="ops")


async def test_actions_need_the_csrf_token_unless_made_with_the_bearer_token():
    app = create_app(user="ops", password="pw", allowed_hosts=["dash.test"], allowed_origins=[])
    async with client(app, auth=("ops", "pw")) as c:
        token = csrf_of((await c.get("/")).text)
        refused = await c.post("/api/queues/product-embedding/pause")
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.json()["error"]
        assert not await embeddings.is_paused()
        wrong = await c.post("/api/queues/product-embedding/pause", headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        cross = await c.post(
            "/api/queues/product-embedding/pause",
            headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
        )
        assert cross.status_code == 403 and not await embeddings.is_paused()
        ok = await c.post(
            "/api/queues/product-embedding/pause", headers={"X-CSRF-Token": token, "Origin": "http://dash.test"}
        )
        assert ok.status_code == 200 and await embeddings.is_paused()
    async with client(create_app(token=TOKEN), headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.post("/api/queues/product-embedding/resume")).status_code == 200
    assert not await embeddings.is_paused()


async def test_cancel_is_guarded_like_every_action():
    await jobqueue.enqueue_product_embedding("p1")
    cancel = "/api/jobs/product-embedding:p1/cancel"
    app = create_app(user="ops", password="pw", allowed_hosts=["dash.test"])
    async with client(app) as c:
        assert (await c.post(cancel)).status_code == 401
    async with client(app, auth=("ops", "pw")) as c:
        token = csrf_of((await c.get("/")).text)
        assert (await c.post(cancel)).status_code == 403
        wrong = await c.post(cancel, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
        cross = await c.post(cancel, headers={"X-CSRF-Token": token, "Origin": "https://evil.example"})
        assert cross.status_code == 403 and "cross-origin" in cross.json()["error"]
        assert await embeddings.get_job_state("product-embedding:p1") == "waiting"
        ok = await c.post(cancel, headers={"X-CSRF-Token": token, "Origin": "http://dash.test"})
        assert ok.json()["was"] == "waiting"
    assert (await embeddings.get_job("product-embedding:p1")).error_type == "JobCancelled"


async def test_removing_a_schedule_needs_the_csrf_token_too():
    await jobqueue.upsert_schedule("kept", "product-embedding", every=60, payload={"product_id": "p1"})
    async with client(create_app(user="ops", password="pw"), auth=("ops", "pw")) as c:
        token = csrf_of((await c.get("/")).text)
        refused = await c.post("/api/schedules/kept/remove")
        assert refused.status_code == 403 and [s.id for s in await jobqueue.get_schedules()] == ["kept"]
        ok = await c.post("/api/schedules/kept/remove", headers={"X-CSRF-Token": token})
        assert ok.json() == {"removed": True} and await jobqueue.get_schedules() == []


async def test_without_credentials_only_loopback_clients_get_in(monkeypatch):
    for name in ("TOKEN", "USER", "PASSWORD"):
        monkeypatch.delenv(f"JOBQUEUE_DASHBOARD_{name}", raising=False)
    app = create_app()
    async with client(app, ip="10.1.2.3") as c:
        response = await c.get("/api/queues")
        assert response.status_code == 401
        assert "JOBQUEUE_DASHBOARD_TOKEN" in response.json()["error"]
    async with client(app, ip="::1", base="http://[::1]:8080") as c:
        assert (await c.get("/api/queues")).status_code == 200


async def test_credentials_come_from_the_environment_on_first_request(monkeypatch):
    monkeypatch.delenv("JOBQUEUE_DASHBOARD_TOKEN", raising=False)
    app = create_app()  # built before the variable is set: nothing is read at construction
    monkeypatch.setenv("JOBQUEUE_DASHBOARD_TOKEN", TOKEN)
    async with client(app) as c:
        assert (await c.get("/api/queues")).status_code == 401
    async with client(app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        assert (await c.get("/api/queues")).status_code == 200
    await jobqueue.close_queues()
