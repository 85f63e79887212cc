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


@pytest.mark.e2e
def test_fandoms_detached_services_run_on_the_head_node(stack):
    # 0-CPU actors do not keep a node busy for the autoscaler: anywhere but the head
    # they die when it releases their node (cluster/settings.py: ON_HEAD_NODE).
    import ray

    from actors.archiver import ACTOR_NAME
    from actors.capacity_applier import APPLIER_NAME
    from cluster.settings import RAY_NAMESPACE
    from jobs.pool import POOL_NAME

    (head,) = [n["NodeID"] for n in ray.nodes()
               if n["Alive"] and "node:__internal_head__" in n["Resources"]]
    for name in (ACTOR_NAME, APPLIER_NAME, POOL_NAME):
        actor = ray.get_actor(name, namespace=RAY_NAMESPACE)
        where = actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())
        assert ray.get(where, timeout=60) == head, name
