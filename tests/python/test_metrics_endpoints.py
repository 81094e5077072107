"""Ready-made Prometheus endpoints (Django view, FastAPI route) over the
core's exposition of several caches, and the Grafana dashboard in docs/
referring only to metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.test import Client, override_settings
from fastapi import FastAPI
from fastapi.testclient import TestClient

from conftest import unique
from stratacache import Cache, metrics_text
from stratacache.fastapi import metrics_route

ROOT = Path(__file__).resolve().parents[2]


def families(text: str) -> list[str]:
    return re.findall(r"^# TYPE (\S+) ", text, re.M)


def test_several_caches_one_family_each_one_sample_per_namespace() -> None:
    a, b = Cache(namespace=unique("ma")), Cache(namespace=unique("mb"))
    a.set("k", 1)
    a.get("k")
    text = metrics_text(a, b)
    names = families(text)
    assert len(names) == len(set(names)), "a metric family repeated"
    assert f'stratacache_l1_hits_total{{namespace="{a.namespace}"}} 1' in text
    assert f'stratacache_l1_hits_total{{namespace="{b.namespace}"}} 0' in text
    # The same cache twice is one namespace once.
    assert metrics_text(a, a).count(f'stratacache_l1_hits_total{{namespace="{a.namespace}"}}') == 1


def test_the_django_view() -> None:
    c = Client()
    r = c.get("/metrics/")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "stratacache_l1_hits_total{namespace=" in r.content.decode()
    with override_settings(STRATACACHE_METRICS_TOKEN="s3"):
        assert c.get("/metrics/").status_code == 401
        assert c.get("/metrics/", HTTP_AUTHORIZATION="Bearer s3").status_code == 200


def test_the_fastapi_route() -> None:
    cache = Cache(namespace=unique("mf"))
    app = FastAPI()
    metrics_route(app, cache, path="/metrics", token="t")
    with TestClient(app) as client:
        assert client.get("/metrics").status_code == 401
        r = client.get("/metrics", headers={"Authorization": "Bearer t"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert f'namespace="{cache.namespace}"' in r.text


def test_the_grafana_dashboard_uses_metrics_that_exist() -> None:
    dash = json.loads((ROOT / "docs/grafana/stratacache.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"stratacache_[a-z0-9_]+", e)}
    known = set(families(metrics_text(Cache(namespace=unique("mg")))))
    assert used and used <= known, used - known
