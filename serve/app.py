"""Serve application builders named by the declarative config (serve/config.py)."""

from __future__ import annotations

from serve.api import Api
from serve.chat_deployment import ChatGateway


def api_app(args: dict):
    return Api.bind(args.get("env") or {})


def chat_app(args: dict):
    return ChatGateway.bind(args.get("env") or {})
