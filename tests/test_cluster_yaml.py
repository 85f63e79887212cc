"""ray-cluster.yaml passes Ray's own validator; the planner's bundles fit its node types;
the KubeRay manifest has the same node groups and the Serve config fandom would apply."""

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from cluster.calendar import parse_concert
from cluster.capacity import CapacityModel, pack, plan_at
from cluster.settings import Settings
from serve.config import serve_config

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 7, 1, tzinfo=UTC)


def cluster_config() -> dict:
    return yaml.safe_load((ROOT / "ray-cluster.yaml").read_text())


def production_settings(config: dict) -> Settings:
    """The FANDOM_* settings ray-cluster.yaml writes to /etc/fandom.env on every node."""
    text = "\n".join(config["setup_commands"])
    env = dict(re.findall(r"^\s*(FANDOM_[A-Z_]+)=(\S*)\s*$", text, re.M))
    assert "FANDOM_CHAT_REPLICA_CPUS" in env and "FANDOM_JWT_SECRET" not in env
    return Settings.from_env(env)


def node_types(config: dict) -> dict[str, dict[str, float]]:
    return {name: t["resources"] for name, t in config["available_node_types"].items()}


def big_night(model: CapacityModel, *audiences_and_ladders):
    start, end = (NOW + timedelta(hours=1)).isoformat(), (NOW + timedelta(hours=3)).isoformat()
    concerts = [parse_concert({"id": f"c{i}", "title": "x", "starts_at": start, "ends_at": end,
                               "expected_audience": fans, "live_ladders": ladders}, now=NOW)
                for i, (fans, ladders) in enumerate(audiences_and_ladders)]
    return plan_at(concerts, (NOW + timedelta(hours=2)).timestamp(), model)


def test_ray_validator_accepts_ray_cluster_yaml():
    validate_config(prepare_config(cluster_config()))


def test_the_validator_is_really_checking():
    bad = copy.deepcopy(cluster_config())
    bad["available_node_types"]["chat"]["resources"]["fandom_chat"] = 8.5  # must be integers
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        validate_config(prepare_config(bad))
    bad = copy.deepcopy(cluster_config())
    bad["available_node_types"]["chat"]["min_wokers"] = 1  # unknown keys are refused
    with pytest.raises(jsonschema.ValidationError, match="min_wokers"):
        validate_config(prepare_config(bad))


def test_planner_bundles_fit_the_node_types():
    config = cluster_config()
    model = CapacityModel.from_settings(production_settings(config))
    types = node_types(config)
    plan = big_night(model, (200_000, 2), (50_000, 1))
    assert plan.chat_floor == 13 and len(plan.bundles) == 13 + 3
    assert pack(plan.bundles, types) == {"chat": 2, "transcode": 1}
    # Each kind of bundle fits exactly one node type: the one meant for it.
    for bundle, kind in ((model.chat_bundle(), "chat"), (model.ladder_bundle(), "transcode")):
        fits = [n for n, res in types.items() if all(res.get(k, 0) >= v for k, v in bundle.items())]
        assert fits == [kind]


def test_the_largest_plan_fits_within_max_workers():
    config = cluster_config()
    settings = production_settings(config)
    model = CapacityModel.from_settings(settings)
    types = config["available_node_types"]
    # Far more fans than the cluster can host: the planner caps the floor at
    # FANDOM_CHAT_MAX_REPLICAS, which must fit the chat type's max_workers.
    plan = big_night(model, (50_000_000, 32), (1_000_000, 32), (10_000, 16))
    assert plan.chat_floor == settings.chat_max_replicas and plan.warnings
    needed = pack(plan.bundles, node_types(config))
    assert needed == {"chat": types["chat"]["max_workers"], "transcode": types["transcode"]["max_workers"]}
    assert sum(needed.values()) <= config["max_workers"]
    # The everyday floor fits the chat nodes kept between concerts.
    slots = types["chat"]["min_workers"] * types["chat"]["resources"]["fandom_chat"]
    assert settings.chat_replicas <= slots


def kuberay() -> tuple[dict, dict]:
    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/kuberay-rayservice.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    return kinds["ConfigMap"], kinds["RayService"]


def test_kuberay_has_the_same_node_groups():
    config, (_, service) = cluster_config(), kuberay()
    spec = service["spec"]["rayClusterConfig"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for name, t in config["available_node_types"].items():
        if name == "head":
            continue
        g = groups[name]
        custom = json.loads(json.loads(g["rayStartParams"]["resources"]))
        resources = {"CPU": int(g["rayStartParams"]["num-cpus"]), **custom}
        assert resources == t["resources"]
        assert (g["minReplicas"], g["maxReplicas"]) == (t["min_workers"], t["max_workers"])


def test_kuberay_serve_config_is_fandoms_and_holds_no_secret():
    configmap, service = kuberay()
    settings = Settings.from_env(configmap["data"])
    deployed = yaml.safe_load(service["spec"]["serveConfigV2"])
    assert deployed == json.loads(json.dumps(serve_config(settings)))
    raw = service["spec"]["serveConfigV2"] + json.dumps(configmap["data"])
    assert "FANDOM_JWT_SECRET" not in raw and "RAY_AUTH_TOKEN" not in raw
    for c in [service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0],
              *(g["template"]["spec"]["containers"][0]
                for g in service["spec"]["rayClusterConfig"]["workerGroupSpecs"])]:
        assert {"secretRef": {"name": "fandom-secrets"}} in c["envFrom"]
        assert all("value" not in e or "SECRET" not in e["name"] for e in c.get("env", []))
