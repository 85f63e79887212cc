"""docs/http-api.md documents every route the API serves (and no phantom ones)."""

import pathlib
import re
import warnings

from serve.api import app

DOC = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "http-api.md").read_text()


def _norm(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])


def test_every_route_is_documented():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. duplicate OpenAPI operation ids
        spec = app.openapi()
    documented = {(m.upper(), _norm(p)) for ms, p in
                  re.findall(r"^\| `([A-Z`/ ]+?) (/[^`]*)`", DOC, flags=re.M)
                  for m in re.findall(r"[A-Z]+", ms)}
    served = {(m.upper(), _norm(p)) for p, ops in spec["paths"].items() for m in ops}
    assert served - documented == set(), "routes missing from docs/http-api.md"
    assert documented - served == {("HEAD", "/media/{}")}, "docs list routes that do not exist"
