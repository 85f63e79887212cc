"""Base modules: settings from the environment, tokens, and the documented code table."""

import pathlib
import re

import pytest

from cluster import tokens
from cluster.codes import CloseCode, ErrorCode
from cluster.errors import AuthError, ConfigError, InvalidInput
from cluster.settings import DEV_JWT_SECRET, Settings, settings_table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_defaults_run_on_a_laptop_and_warn_about_the_dev_secret():
    s = Settings.from_env({})
    assert s.redis_url == "" and s.ws_port == 8765 and s.history_len >= 10_000
    assert s.dedup_ttl_s >= 300 and s.tick_ms <= 100  # a rest longer than that eats the p99 budget
    assert s.jwt_secret == DEV_JWT_SECRET and "DEVELOPMENT" in s.warnings[0]


def test_env_parsing_and_errors_that_say_how_to_fix():
    s = Settings.from_env({"FANDOM_WS_PORT": "9000", "FANDOM_RATE_PER_S": "2.5",
                           "FANDOM_JWT_SECRET": "x" * 40})
    assert (s.ws_port, s.rate_per_s, s.warnings) == (9000, 2.5, [])
    with pytest.raises(ConfigError, match="FANDOM_WS_PORT='nine' is not a valid int"):
        Settings.from_env({"FANDOM_WS_PORT": "nine"})
    with pytest.raises(ConfigError, match="FANDOM_DEDUP_TTL_S must be at least 300"):
        Settings.from_env({"FANDOM_DEDUP_TTL_S": "10"})
    with pytest.raises(ConfigError, match="FANDOM_CHAT_MAX_REPLICAS"):
        Settings.from_env({"FANDOM_CHAT_REPLICAS": "5", "FANDOM_CHAT_MAX_REPLICAS": "2"})


def test_secrets_stay_out_of_the_serve_config_env():
    s = Settings.from_env({"FANDOM_JWT_SECRET": "y" * 40})
    assert "FANDOM_JWT_SECRET" not in s.to_env(secrets=False)
    assert Settings.from_env(s.to_env()) == s


def test_token_round_trip_and_rejections():
    t = tokens.mint("k" * 32, "alice", role="ops", rooms=["$vip"], ttl_s=60, now=1000)
    c = tokens.verify("k" * 32, t, now=1010)
    assert (c.user, c.role, c.rooms, c.is_ops) == ("alice", "ops", frozenset({"$vip"}), True)
    with pytest.raises(AuthError, match="expired"):
        tokens.verify("k" * 32, t, now=1060)
    with pytest.raises(AuthError, match="invalid token"):
        tokens.verify("z" * 32, t, now=1010)  # forged: other secret
    with pytest.raises(AuthError, match="missing"):
        tokens.verify("k" * 32, None)
    with pytest.raises(InvalidInput):
        tokens.mint("k" * 32, "bad user!")
    with pytest.raises(InvalidInput):
        tokens.mint("k" * 32, "u", role="admin")


def test_protocol_doc_lists_every_code():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    for code in [*ErrorCode, *CloseCode]:
        assert re.search(rf"\|\s*`?{int(code)}`?\s*\|", doc), f"{code!r} missing from docs/protocol.md"


def test_configuration_doc_lists_every_setting():
    from cluster.cli.config import render_settings_table

    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert render_settings_table() in doc, "regenerate with: fandom config table"
    for name, _, _ in settings_table():
        assert f"`{name}`" in doc, f"{name} missing from docs/configuration.md"


def _forge(header: dict, payload: dict, secret: str | None) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def enc(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    signing = f"{enc(header)}.{enc(payload)}"
    sig = b"" if secret is None else hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.mark.parametrize("header,payload,secret,why", [
    ({"alg": "none"}, {"sub": "a", "exp": 2e9}, None, "signature"),
    ({"alg": "HS512"}, {"sub": "a", "exp": 2e9}, "k" * 32, "alg must be HS256"),
    ({"alg": "HS256"}, {"sub": "a"}, "k" * 32, "exp"),
    ({"alg": "HS256"}, {"exp": 2e9}, "k" * 32, "sub"),
    ({"alg": "HS256"}, {"sub": "a", "exp": 2e9, "role": "admin"}, "k" * 32, "role"),
    ({"alg": "HS256"}, {"sub": "a", "exp": 2e9, "rooms": "$vip"}, "k" * 32, "rooms"),
    ({"alg": "HS256"}, {"sub": "a", "exp": True}, "k" * 32, "exp"),
])
def test_verifier_refuses_what_it_must(header, payload, secret, why):
    with pytest.raises(AuthError, match=why):
        tokens.verify("k" * 32, _forge(header, payload, secret), now=1000)


def test_verifier_accepts_tokens_from_other_hs256_libraries():
    import jwt

    t = jwt.encode({"sub": "bob", "exp": 2000, "rooms": ["$a"]}, "k" * 32, algorithm="HS256")
    assert tokens.verify("k" * 32, t, now=1000).rooms == frozenset({"$a"})
    for garbage in ["a.b", "a.b.c.d", "!!.??.%%", t[:-3] + "xyz"]:
        with pytest.raises(AuthError):
            tokens.verify("k" * 32, garbage, now=1000)
