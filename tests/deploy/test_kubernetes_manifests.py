"""deploy/kubernetes/ is valid Kubernetes (schemas bundled by kubernetes-validate, offline) and probes real routes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.server.app import create_app
from appliance.settings import Settings

yaml = pytest.importorskip("yaml")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install '.[deploy-lint]'")

MANIFESTS = sorted((Path(__file__).resolve().parents[2] / "deploy" / "kubernetes").glob("*.yaml"))
VERSION = "1.37.0"


def _documents() -> list[dict]:
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


def _box_container() -> dict:
    sts = next(d for d in _documents() if d["kind"] == "StatefulSet")
    return next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "server")


def test_every_manifest_validates_strictly_against_the_kubernetes_schemas():
    docs = _documents()
    assert MANIFESTS and {"StatefulSet", "Service", "Deployment"} <= {d["kind"] for d in docs}
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    broken = {**_documents()[1]}
    broken["spec"] = {**broken["spec"], "replicas": "two"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_probes_point_at_routes_the_box_answers_without_credentials(tmp_path):
    box = _box_container()
    assert box["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ready_path = box["readinessProbe"]["httpGet"]["path"]
    assert box["startupProbe"]["httpGet"]["path"] == ready_path
    app = create_app(Settings(state_dir=tmp_path / "state"))
    c = TestClient(app)  # no lifespan: the engines are "loading"
    assert c.get("/healthz").status_code == 200
    assert c.get(ready_path).status_code == 503, "a probe path must answer without a key, and not ready while loading"
    app.state.runtime.state = "ready"
    assert c.get(ready_path).status_code == 200


def test_the_box_is_hardened_as_on_the_appliance():
    ctx = _box_container()["securityContext"]
    assert ctx["readOnlyRootFilesystem"] and not ctx["allowPrivilegeEscalation"] and ctx["capabilities"]["drop"] == ["ALL"]
