"""The schedules example: declared at every start without duplicates, changed over HTTP."""

import httpx

from examples.schedules_app import app


async def test_schedules_example_declares_once_and_changes_at_run_time():
    for _ in range(2):  # two starts of the service (or two replicas)
        async with app.router.lifespan_context(app):
            pass
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            (declared,) = (await client.get("/schedules")).json()
            assert (declared["id"], declared["cron"], declared["tz"]) == (
                "reembed-featured",
                "30 2 * * *",
                "Europe/London",
            )

            put = await client.put(
                "/schedules/reembed-featured",
                json={"queue": "product-embedding", "every": 3600, "payload": {"product_id": "featured"}},
            )
            assert put.status_code == 200
            assert (put.json()["every"], put.json()["cron"]) == (3600.0, None)
            bad = await client.put(
                "/schedules/other", json={"queue": "product-embedding", "cron": "nope", "payload": {"product_id": "x"}}
            )
            assert bad.status_code == 422 and "invalid cron expression" in bad.json()["detail"]
            too_often = await client.put(
                "/schedules/other", json={"queue": "product-embedding", "every": 0.5, "payload": {"product_id": "x"}}
            )
            assert too_often.status_code == 422 and "every must be at least 1s" in too_often.json()["detail"]
            glob = await client.put(
                "/schedules/other*", json={"queue": "product-embedding", "every": 60, "payload": {"product_id": "x"}}
            )
            assert glob.status_code == 422 and "schedule_id must not contain" in glob.json()["detail"]
            assert [s["id"] for s in (await client.get("/schedules")).json()] == ["reembed-featured"]

            assert (await client.delete("/schedules/reembed-featured")).status_code == 204
            assert (await client.delete("/schedules/reembed-featured")).status_code == 404
            assert (await client.get("/schedules")).json() == []
