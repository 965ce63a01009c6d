"""The embedding example in examples/portal runs against a real database on both backends."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from estateflow import Engine

from .engine_helpers import at

APP = Path(__file__).resolve().parents[1] / "examples" / "portal" / "app.py"


def load_portal():
    spec = importlib.util.spec_from_file_location("portal_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def portal(db_url):
    module = load_portal()
    engine = Engine(db_url, create=True, directory=module.STAFF)
    app = module.create_app(engine=engine)
    yield app.test_client()
    engine.close()


def test_portal_opens_assigns_and_sees_the_breach_through_its_hook(portal):
    friday = at(2025, 9, 26, 10, 0).isoformat()
    opened = portal.post(f"/complaints", query_string={"now": friday}, headers={"X-Actor": "wang"},
                         json={"channel": "hotline", "community": "lakeside", "summary": "电梯噪音大",
                               "phone": "13800138000"})
    assert opened.status_code == 201
    number = opened.json["number"]
    assigned = portal.post(f"/cases/{number}/assign", query_string={"now": friday}, headers={"X-Actor": "wang"},
                           json={"data": {"category": "service", "severity": "ordinary",
                                          "department": "engineering", "assignee": "li"}})
    assert assigned.status_code == 200 and assigned.json["state"] == "assigned"
    shown = portal.get(f"/cases/{number}", query_string={"now": friday}, headers={"X-Actor": "li"}).json
    feedback = next(c for c in shown["clocks"] if c["name"] == "feedback")
    assert feedback["due_at"] == "2025-09-30T10:00:00+00:00"  # Sun 28th is a make-up working day
    assert "report_back" in shown["can"]
    assert portal.get("/alerts").json == []
    late = at(2025, 9, 30, 18, 1).isoformat()
    assert portal.post(f"/tick", query_string={"now": late}).json["fired"] >= 1
    assert {"kind": "breach", "case": number, "state": "assigned"} in portal.get("/alerts").json


def test_portal_maps_estateflow_errors_to_http_statuses(portal):
    friday = at(2025, 9, 26, 10, 0).isoformat()
    missing = portal.post(f"/complaints", query_string={"now": friday}, headers={"X-Actor": "wang"},
                          json={"channel": "hotline", "community": "lakeside"})
    assert missing.status_code == 422 and missing.json["error"] == "MissingFields"
    assert portal.get("/cases/TS-2099-000001", headers={"X-Actor": "wang"}).status_code == 404
    number = portal.post(f"/complaints", query_string={"now": friday}, headers={"X-Actor": "wang"},
                         json={"channel": "hotline", "community": "lakeside", "summary": "漏水"}).json["number"]
    refused = portal.post(f"/cases/{number}/assign", headers={"X-Actor": "li"},
                          json={"data": {"department": "engineering", "assignee": "li"}})
    assert refused.status_code == 403 and refused.json["error"] == "RoleNotAllowed"
    stale = portal.post(f"/cases/{number}/assign", headers={"X-Actor": "wang"},
                        json={"expected_version": 99, "data": {"category": "service", "department": "engineering",
                                                               "assignee": "li"}})
    assert stale.status_code == 409
    assert portal.get("/cases").status_code == 401
