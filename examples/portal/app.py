"""A small property-service portal embedding estateflow (Flask).

Run it:   python3 -m pip install 'estateflow[portal]' && python3 examples/portal/app.py
Then:     curl -X POST localhost:5000/complaints -H 'X-Actor: wang' -H 'Content-Type: application/json' \
               -d '{"channel": "hotline", "community": "lakeside", "summary": "电梯噪音大"}'

What it shows (README "Embedding in an existing application"):
- the portal keeps its own database URL (``PORTAL_DATABASE_URL``) and its own staff list,
  handed to estateflow as a directory;
- estateflow's errors map onto HTTP statuses through the builtin each one inherits
  (LookupError → 404, PermissionError → 403, ValueError → 422, ConflictError → 409), so the
  portal needs no list of estateflow classes;
- a registered action (``crm_ticket``) and hooks (``on("breach")``) connect the workflow to the
  portal's own code; hooks run after commit and so only ever see committed cases;
- time is injected (``?now=`` in tests, wall clock otherwise), so the portal is testable.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from flask import Flask, abort, jsonify, request

from estateflow import Actor, ConflictError, Engine, EstateflowError, StaticDirectory

__all__ = ["STAFF", "create_app"]

STAFF = StaticDirectory([
    Actor("wang", roles={"cs_clerk"}, communities={"lakeside"}, name="王客服"),
    Actor("li", roles={"handler"}, communities={"lakeside"}, departments={"engineering"}, name="李工"),
    Actor("zhao", roles={"cs_manager"}, communities={"lakeside"}, name="赵经理"),
    Actor("chen", roles={"records_clerk"}, communities={"lakeside"}, name="陈资料员"),
])


def _status(exc: EstateflowError) -> int:
    if isinstance(exc, ConflictError):
        return 409
    for builtin, status in ((PermissionError, 403), (LookupError, 404), (ValueError, 422)):
        if isinstance(exc, builtin):
            return status
    return 500


def _case_json(case: Any) -> dict[str, Any]:
    return {"id": case.id, "number": case.number, "workflow": case.workflow, "state": case.state,
            "assignee": case.assignee, "version": case.version, "data": dict(case.data)}


def create_app(database_url: str | None = None, *, config: Any = None, engine: Engine | None = None) -> Flask:
    """The portal; pass ``engine`` to share one (tests), or a URL to own one."""
    app = Flask(__name__)
    engine = engine or Engine(database_url or os.environ.get("PORTAL_DATABASE_URL", "sqlite:///portal.db"),
                              create=True, directory=STAFF, config=config)
    app.extensions["estateflow"] = engine
    app.config["FEED"] = []   # what the hooks saw: the portal's own "alerts" page

    engine.on("breach", lambda case, event: app.config["FEED"].append(
        {"kind": "breach", "case": case.number, "state": case.state}))
    engine.on("closed", lambda case, event: app.config["FEED"].append({"kind": "closed", "case": case.number}))

    def actor() -> str:
        who = request.headers.get("X-Actor")
        if not who:
            abort(401, "send X-Actor: <staff id>")
        return who

    def now() -> datetime | None:
        value = request.args.get("now")
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            abort(400, "now must be an ISO time with offset, e.g. 2025-09-26T10:00+08:00")

    @app.errorhandler(EstateflowError)
    def estateflow_error(exc: EstateflowError):  # type: ignore[no-untyped-def]
        return jsonify(error=type(exc).__name__, message=str(exc)), _status(exc)

    @app.post("/complaints")
    def open_complaint():  # type: ignore[no-untyped-def]
        case = engine.open("complaint", request.get_json(force=True), actor=actor(), now=now())
        return jsonify(_case_json(case)), 201

    @app.get("/cases/<number>")
    def show(number: str):  # type: ignore[no-untyped-def]
        who = actor()
        case = engine.get(number, actor=who)
        clocks = [{"name": c.name, "status": c.status, "due_at": c.due_at.isoformat() if c.due_at else None,
                   "breached": c.breached} for c in engine.clocks(case.id, now=now())]
        return jsonify(_case_json(case) | {"clocks": clocks,
                                           "can": engine.available_triggers(case.id, who, now=now())})

    @app.post("/cases/<number>/<trigger>")
    def fire(number: str, trigger: str):  # type: ignore[no-untyped-def]
        body = request.get_json(silent=True) or {}
        case = engine.fire(number, trigger, actor=actor(), data=body.get("data"), now=now(),
                           expected_version=body.get("expected_version"))
        return jsonify(_case_json(case))

    @app.get("/cases")
    def listing():  # type: ignore[no-untyped-def]
        found = engine.find(workflow=request.args.get("workflow"), open=True, actor=actor(), limit=100)
        return jsonify([_case_json(c) for c in found])

    @app.post("/tick")
    def tick():  # type: ignore[no-untyped-def]
        """What cron or `estateflow run` does; exposed here so the example is self-contained."""
        result = engine.tick(now=now())
        return jsonify(fired=len(result.fired), delivered=result.delivered)

    @app.get("/alerts")
    def alerts():  # type: ignore[no-untyped-def]
        return jsonify(app.config["FEED"])

    return app


if __name__ == "__main__":  # pragma: no cover - manual run
    create_app().run(debug=False)
