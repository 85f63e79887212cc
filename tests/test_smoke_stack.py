import httpx
import pytest


@pytest.mark.e2e
def test_stack_serves_health_and_auth(stack):
    r = httpx.get(f"{stack.http}/healthz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = httpx.get(f"{stack.http}/api/chat/replicas", headers=stack.auth(role="fan"), timeout=10)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = httpx.get(f"{stack.http}/api/chat/replicas", timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
