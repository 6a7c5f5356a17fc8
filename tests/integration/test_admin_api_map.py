"""Editing the dependency map through the admin API: an admin action, audited in the
console's and the stability audit logs, bumping the config version the guards watch;
unknown resources, cycles and bad numbers are a clear 4xx."""

from __future__ import annotations

from admin_api_app import audit_rows, stack  # noqa: F401 - fixture

EDGE = {"grade": "weak", "timeout_ms": 321, "retries": 1, "fallback": "skip", "reason": "tune"}
RES = {"kind": "service", "owner": "fraud team", "reason": "new scorer"}


def test_only_admins_edit_the_map_and_everyone_reads_it(stack):
    vic, olga, ada = stack.as_user("vic"), stack.as_user("olga"), stack.as_user("ada")
    shown = stack.http.get("/admin/v1/map", headers=vic).json()
    assert {"link.pay", "risk"} <= {r["name"] for r in shown["resources"]}
    path = "/admin/v1/map/edges/link.pay/risk"
    for who in (vic, olga):
        answer = stack.http.put(path, json=EDGE, headers=who)
        assert answer.status_code == 403 and "map.edit" in answer.json()["error"]["message"]
    assert stack.http.put(path, json=EDGE, headers=ada).status_code == 200


def test_an_edge_edit_is_stored_audited_and_bumps_the_version(stack):
    ada = stack.as_user("ada")
    svc = stack.platform.stability.switches
    before = svc.version()
    answer = stack.http.put("/admin/v1/map/edges/link.pay/risk", json=EDGE, headers=ada)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["version"] == before + 1 == svc.version()
    assert body["before"]["grade"] == "weak" and body["after"]["timeout_ms"] == 321
    edge = stack.platform.stability.map_store.load().edge("link.pay", "risk")
    assert (edge.timeout_ms, edge.retries, edge.fallback) == (321, 1, "skip")
    entry = svc.audit_log(1)[0]
    assert (entry["action"], entry["actor"], entry["target"]) == (
        "map.edge.put",
        "ada",
        "link.pay->risk",
    )
    assert entry["after"]["timeout_ms"] == 321 and entry["reason"] == "tune"
    row = audit_rows(stack.engine, "map.edge.put")[0]
    assert (row["actor"], row["role"], row["detail"]["ok"]) == ("ada", "admin", True)


def test_resources_are_added_and_removed_once_no_edge_touches_them(stack):
    ada = stack.as_user("ada")
    added = stack.http.put("/admin/v1/map/resources/scorer", json=RES, headers=ada)
    assert added.status_code == 200 and added.json()["before"] is None
    edge = {**EDGE, "timeout_ms": 50}
    assert stack.http.put("/admin/v1/map/edges/risk/scorer", json=edge, headers=ada).is_success
    busy = stack.http.request(
        "DELETE", "/admin/v1/map/resources/scorer", json={"reason": "gone"}, headers=ada
    )
    assert busy.status_code == 409 and "risk -> scorer" in busy.json()["error"]["message"]
    cut = stack.http.request(
        "DELETE", "/admin/v1/map/edges/risk/scorer", json={"reason": "gone"}, headers=ada
    )
    assert cut.status_code == 200 and cut.json()["after"] is None
    done = stack.http.request(
        "DELETE", "/admin/v1/map/resources/scorer", json={"reason": "gone"}, headers=ada
    )
    assert done.status_code == 200
    names = {r.name for r in stack.platform.stability.map_store.load().resources}
    assert "scorer" not in names and "risk" in names
    actions = [e["action"] for e in stack.platform.stability.switches.audit_log(10)]
    assert actions[:4] == [
        "map.resource.delete",
        "map.edge.delete",
        "map.edge.put",
        "map.resource.put",
    ]


def test_bad_map_edits_are_a_clear_4xx_and_change_nothing(stack):
    ada = stack.as_user("ada")
    svc = stack.platform.stability.switches
    version, dmap = svc.version(), stack.platform.stability.map_store.load()
    cases = [
        ("put", "/admin/v1/map/edges/link.pay/nowhere", EDGE, 404, "unknown resource nowhere"),
        ("put", "/admin/v1/map/edges/risk/link.pay", EDGE, 422, "dependency cycle"),
        ("put", "/admin/v1/map/edges/link.pay/risk", {**EDGE, "timeout_ms": 0}, 422, "timeout"),
        ("put", "/admin/v1/map/edges/link.pay/risk", {**EDGE, "grade": "meh"}, 422, "grade"),
        ("put", "/admin/v1/map/edges/link.pay/risk", {**EDGE, "fallback": ""}, 422, "fallback"),
        ("put", "/admin/v1/map/edges/link.pay/risk", {**EDGE, "reason": " "}, 422, "reason"),
        ("put", "/admin/v1/map/resources/x", {**RES, "sla_target": 2}, 422, "sla_target"),
        ("delete", "/admin/v1/map/edges/risk/database", {"reason": "x"}, 404, "no edge"),
        ("delete", "/admin/v1/map/resources/nothing", {"reason": "x"}, 404, "unknown resource"),
    ]
    for method, path, body, status, words in cases:
        answer = stack.http.request(method.upper(), path, json=body, headers=ada)
        assert answer.status_code == status, (path, body, answer.text)
        assert words in answer.json()["error"]["message"], answer.text
    assert svc.version() == version
    assert stack.platform.stability.map_store.load().to_dict() == dmap.to_dict()
    refused = [r for r in audit_rows(stack.engine, "map.edge.put") if not r["detail"]["ok"]]
    assert len(refused) == 6
