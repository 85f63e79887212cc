"""The `fandom` command as users run it (subprocesses, real Ray where it needs one)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from cluster import tokens
from cluster.cli.config import render_serve_config
from cluster.settings import Settings

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fandom(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def test_token_is_signed_with_the_configured_secret():
    out = fandom("token", "--user", "alice", "--role", "ops", "--rooms", "$vip,$x", "--ttl", "60",
                 env={"FANDOM_JWT_SECRET": "s" * 40})
    claims = tokens.verify("s" * 40, out.stdout.strip())
    assert (claims.user, claims.role, claims.rooms) == ("alice", "ops", frozenset({"$vip", "$x"}))


def test_bad_input_is_a_clear_error_with_a_code():
    out = fandom("token", "--user", "no spaces")
    assert out.returncode == 2 and out.stderr.startswith("error[invalid_user]")
    out = fandom("config", "show", env={"FANDOM_WS_PORT": "http"})
    assert out.returncode == 2 and "error[config_invalid]: FANDOM_WS_PORT='http'" in out.stderr


def test_dev_secret_is_loudly_flagged():
    env = {k: v for k, v in os.environ.items() if k != "FANDOM_JWT_SECRET"}
    out = subprocess.run([sys.executable, "-m", "cluster.cli", "token", "--user", "a"],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert "DEVELOPMENT secret" in out.stderr


def test_checked_in_serve_config_is_what_fandom_generates_and_valid():
    text = (ROOT / "serve-config.yaml").read_text()
    assert text == render_serve_config(Settings.from_env({"FANDOM_REDIS_URL": "redis://127.0.0.1:6379/0"}))
    config = ServeDeploySchema.model_validate(yaml.safe_load(text))
    assert {a.name for a in config.applications} == {"api", "chat"}
    assert "FANDOM_JWT_SECRET:" not in text  # the secret is never written into the config


@pytest.mark.e2e
def test_fandom_up_joins_a_cluster_and_deploys(stack):
    import ray

    address = ray.get_runtime_context().gcs_address
    env = {**stack.settings.to_env(), "RAY_ADDRESS": address}
    out = fandom("up", "--exit-when-ready", env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"ws://127.0.0.1:{stack.settings.ws_port}/ws" in out.stdout
    assert "(embedded)" not in out.stdout  # a Redis URL was given: no embedded server


def test_joining_a_cluster_without_redis_url_is_refused():
    out = fandom("up", "--address", "10.0.0.1:6379", env={"FANDOM_REDIS_URL": ""})
    assert out.returncode == 2 and "needs FANDOM_REDIS_URL" in out.stderr
