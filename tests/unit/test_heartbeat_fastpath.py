"""The heartbeat fast path answers exactly as the route would: same credentials, same body rules, same effect."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from updraft.control import create_app
from updraft.settings import ServerSettings

CAPACITY = {"capacity": {"cpu": "2", "memory": "2Gi"}}
BEAT = {"cpu_pct": 42.5, "memory_pct": 10.0, "running": []}


def test_a_node_beats_as_itself_only_and_errors_read_as_every_route_s(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path))) as api:
        admin = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        tokens = {}
        for name in ("n1", "n2"):
            made = api.post("/v1/tokens", json={"role": "node", "node": name}, headers=admin)
            tokens[name] = {"Authorization": f"Bearer {made.json()['token']}"}
            assert api.put(f"/v1/nodes/{name}", json=CAPACITY, headers=tokens[name]).status_code == 200

        ok = api.post("/v1/nodes/n1/heartbeat", json=BEAT, headers=tokens["n1"])
        assert ok.status_code == 200 and ok.json() == {"stale": [], "known": True, "interval": 1.0}
        assert api.get("/v1/nodes/n1", headers=admin).json()["metrics"]["cpu_pct"] == 42.5

        as_other = api.post("/v1/nodes/n2/heartbeat", json=BEAT, headers=tokens["n1"])
        assert as_other.status_code == 403 and as_other.json()["code"] == "forbidden"
        assert api.get("/v1/nodes/n2", headers=admin).json()["metrics"]["cpu_pct"] == 0.0  # nothing recorded
        nobody = api.post("/v1/nodes/n1/heartbeat", json=BEAT)
        assert nobody.status_code == 401 and nobody.json()["code"] == "unauthorized"
        bad = api.post("/v1/nodes/n1/heartbeat", json={**BEAT, "cpu_pct": "hot"}, headers=tokens["n1"])
        assert bad.status_code == 422 and bad.json()["details"]["field"] == "cpu_pct"
        forged = api.post("/v1/nodes/evil%0Aforged/heartbeat", json=BEAT, headers=admin)
        assert forged.status_code == 422

        metrics = api.get("/metrics", headers=admin).text
        assert 'route="/v1/nodes/{name}/heartbeat"' in metrics and "evil" not in metrics
