"""The ops API for concerts and capacity, over real HTTP on the shared stack."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import redis

from cluster import keys

pytestmark = pytest.mark.e2e


@pytest.fixture
def api(stack, unique):
    r = redis.Redis.from_url(stack.settings.redis_url)
    with httpx.Client(base_url=stack.http, headers=stack.auth(), timeout=15) as client:
        client.unique = unique
        yield client
        # Only what this test added: other capacity tests share the stack's Redis.
        for cid in r.hkeys(keys.CONCERTS):
            if unique in cid.decode():
                r.hdel(keys.CONCERTS, cid)
        r.delete(keys.CAPACITY_OVERRIDE)


def future(hours: float) -> str:
    return (datetime.now(UTC) + timedelta(hours=hours)).replace(microsecond=0).isoformat()


def concert(api, **kw):
    body = {"id": f"t-{api.unique}", "title": "Test night", "starts_at": future(48),
            "ends_at": future(50), "expected_audience": 60_000, **kw}
    return body


def test_ops_only(stack):
    for path in ("/api/concerts", "/api/capacity", "/api/capacity/plan"):
        r = httpx.get(f"{stack.http}{path}", headers=stack.auth("fan-1", role="fan"), timeout=15)
        assert r.status_code == 403 and r.json()["code"] == "forbidden"
        assert httpx.get(f"{stack.http}{path}", timeout=15).status_code == 401


def test_concert_crud(api):
    body = concert(api, timezone="Europe/Berlin", live_ladders=1)
    r = api.post("/api/concerts", json=body)
    assert r.status_code == 201, r.text
    c = r.json()["concert"]
    assert c["id"] == body["id"] and c["phase"] == "upcoming" and c["chat_replicas"] == 3
    assert c["timezone"] == "Europe/Berlin"
    assert api.post("/api/concerts", json=body).json()["code"] == "concert_exists"
    listed = api.get("/api/concerts").json()["concerts"]
    assert body["id"] in [x["id"] for x in listed]
    r = api.patch(f"/api/concerts/{body['id']}", json={"expected_audience": 120_000})
    assert r.status_code == 200 and r.json()["concert"]["chat_replicas"] == 6
    r = api.put(f"/api/concerts/{body['id']}", json={**body, "title": "Renamed"})
    assert r.status_code == 200 and r.json()["concert"]["title"] == "Renamed"
    assert r.json()["concert"]["expected_audience"] == 60_000  # PUT replaces everything
    assert api.get(f"/api/concerts/{body['id']}").json()["concert"]["title"] == "Renamed"
    assert api.delete(f"/api/concerts/{body['id']}").status_code == 204
    for method in ("get", "delete"):
        r = getattr(api, method)(f"/api/concerts/{body['id']}")
        assert r.status_code == 404 and r.json()["code"] == "concert_not_found"
    r = api.put(f"/api/concerts/{body['id']}", json=body)
    assert r.status_code == 404  # PUT does not create


@pytest.mark.parametrize("change, words", [
    ({"expected_audience": 0}, ["expected_audience"]),
    ({"expected_audience": -10}, ["expected_audience"]),
    ({"ends_at": "2020-01-01T00:00:00Z"}, ["must be after starts_at"]),
    ({"starts_at": "2020-01-01T00:00:00Z", "ends_at": "2020-01-01T03:00:00Z"}, ["in the past"]),
    ({"starts_at": "2026-13-40"}, ["starts_at", "ISO 8601"]),
    ({"starts_at": "2030-03-31T02:30", "ends_at": "2030-03-31T05:00", "timezone": "Europe/Berlin"},
     ["does not exist"]),
    ({"speed": 3}, ["unknown field"]),
])
def test_invalid_concerts_are_refused_with_a_code(api, change, words):
    r = api.post("/api/concerts", json=concert(api, **change))
    assert r.status_code == 422 and r.json()["code"] == "invalid_concert"
    for w in words:
        assert w in r.json()["message"]
    assert f"t-{api.unique}" not in [c["id"] for c in api.get("/api/concerts").json()["concerts"]]


def test_non_object_bodies(api):
    r = api.post("/api/concerts", json=[1, 2])
    assert r.status_code == 422 and r.json()["code"] == "invalid_concert"
    r = api.post("/api/concerts", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"


def test_plan_and_timeline(api):
    body = concert(api, live_ladders=1)
    api.post("/api/concerts", json=body).raise_for_status()
    at = datetime.fromisoformat(body["starts_at"]) - timedelta(minutes=1)
    r = api.get("/api/capacity/plan", params={"at": at.isoformat(), "hours": 6})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert plan["chat_floor"] == 3 and len(plan["bundles"]) == 4
    assert [a["concert_id"] for a in plan["active"]] == [body["id"]]
    phases = [t["active"][0]["phase"] if t["active"] else None for t in r.json()["timeline"]]
    assert phases == ["lead", "live", "hold", None]
    bad = api.get("/api/capacity/plan", params={"at": "yesterday"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_time"


def test_override(api):
    r = api.put("/api/capacity/override", json={"chat_replicas": 5, "until": future(1),
                                                "reason": "press preview"})
    assert r.status_code == 200 and r.json()["override"]["by"] == "ops-1"
    plan = api.get("/api/capacity/plan").json()["plan"]
    assert plan["chat_floor"] == 5 and plan["override"]["reason"] == "press preview"
    for body, word in (({"chat_replicas": 5, "until": future(-1), "reason": "x"}, "past"),
                       ({"chat_replicas": 0, "until": future(1), "reason": "x"}, "above 0"),
                       ({"chat_replicas": 5, "until": future(1)}, "reason")):
        r = api.put("/api/capacity/override", json=body)
        assert r.status_code == 422 and r.json()["code"] == "invalid_override"
        assert word in r.json()["message"]
    assert api.delete("/api/capacity/override").status_code == 204
    assert api.get("/api/capacity/plan").json()["plan"]["override"] is None


def test_capacity_status_shape(api):
    r = api.get("/api/capacity")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["clock"] == "redis" and s["plan"]["chat_floor"] >= 2
    assert set(s) >= {"plan", "requested", "in_sync", "applier_alive", "nodes", "chat",
                      "autoscaler_request", "recent_changes", "problems"}
    assert s["applier_alive"] is True  # `fandom up` (the stack fixture) started it
    assert any(n["type"] == "head" for n in s["nodes"])
