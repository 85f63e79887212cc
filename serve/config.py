"""The declarative Ray Serve config of fandom, built from Settings.

``fandom up`` applies exactly this config, and ``fandom config serve`` prints it for
``serve deploy``. Deploying declaratively matters: a later change of only replica
bounds (the concert floor) reconfigures in place instead of replacing every chat
replica and dropping every socket. Secrets are never written here (they would show
in the dashboard); replicas read them from their own environment.
"""

from __future__ import annotations

from cluster.settings import Settings

CHAT_APP = "chat"
CHAT_DEPLOYMENT = "ChatGateway"
API_APP = "api"
API_DEPLOYMENT = "Api"


def serve_config(settings: Settings, *, chat_min_replicas: int | None = None) -> dict:
    """A ServeDeploySchema-shaped dict for these settings (floor override optional)."""
    env = settings.to_env(secrets=False)
    floor = settings.chat_replicas if chat_min_replicas is None else chat_min_replicas
    ceiling = max(settings.chat_max_replicas, floor)
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": settings.host, "port": settings.http_port},
        "applications": [
            {
                "name": API_APP,
                "route_prefix": "/",
                "import_path": "serve.app:api_app",
                "args": {"env": env},
                "deployments": [{
                    "name": API_DEPLOYMENT,
                    "num_replicas": 1,
                    "ray_actor_options": {"num_cpus": 0},
                }],
            },
            {
                "name": CHAT_APP,
                "route_prefix": None,  # chat has its own port, not Serve's HTTP proxy
                "import_path": "serve.app:chat_app",
                "args": {"env": env},
                "deployments": [{
                    "name": CHAT_DEPLOYMENT,
                    # Sockets are not Serve requests; this only bounds control calls.
                    "max_ongoing_requests": 100,
                    "autoscaling_config": {
                        # No initial_replicas: when it is set, every re-apply resets the
                        # target to it (Serve's AutoscalingState.register), which would
                        # remove connection-driven replicas and their sockets whenever
                        # the concert floor moves. Without it Serve keeps the current
                        # target, clamped to the new bounds.
                        "min_replicas": floor,
                        "max_replicas": ceiling,
                        # Serve applies these around the custom policy (serve/autoscaling.py):
                        # grow as soon as connections need it, shrink only after a quiet spell.
                        "upscale_delay_s": 0,
                        "downscale_delay_s": settings.chat_downscale_delay_s,
                        "policy": {
                            "policy_function": "serve.autoscaling:ConnectionsPolicy",
                            "policy_kwargs": {"fans_per_replica": settings.fans_per_replica},
                        },
                    },
                    "ray_actor_options": {"num_cpus": settings.chat_replica_cpus},
                    "health_check_period_s": 5,
                    "health_check_timeout_s": 15,
                    # Serve waits this long after __del__ started draining.
                    "graceful_shutdown_timeout_s": settings.drain_timeout_s + 5,
                    "graceful_shutdown_wait_loop_s": 1,
                }],
            },
        ],
    }
