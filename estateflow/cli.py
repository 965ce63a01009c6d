"""The ``estateflow`` command line (click + rich).

Only this module prints. Heavy modules (SQLAlchemy, transitions, the engine) are imported
inside commands, so ``estateflow --help`` starts fast. Exit status: 0 success, 1 a user error
(one red line saying what and how to fix), 2 a usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

DEFAULT_DB = "sqlite:///estateflow.db"


class State:
    def __init__(self, db: str, workflows: str | None, actors: str | None, as_json: bool,
                 config: str | None = None) -> None:
        self.db = db
        self.workflows = workflows
        self.actors = actors
        self.json = as_json
        self.config = config

    def engine(self, *, create: bool = False) -> Any:
        """An Engine with the global options; ``--config`` is read (and checked) on first use."""
        from estateflow import Engine
        from estateflow.engine._directory import YamlDirectory

        directory = YamlDirectory(self.actors) if self.actors else None
        return Engine(self.db, self.workflows, create=create, directory=directory, config=self.config)


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def fail(message: str) -> None:
    console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True)
    sys.exit(1)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our exceptions into one clear line (or one line per file problem) and exit 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from estateflow import EstateflowError, WorkflowError
        from estateflow.engine._errors import ConfigError

        try:
            return fn(*args, **kwargs)
        except (WorkflowError, ConfigError) as exc:
            err = console(stderr=True)
            for problem in exc.problems:
                err.print(f"[red]{_escape(str(problem))}[/]")
            sys.exit(1)
        except EstateflowError as exc:
            fail(_escape(str(exc)))
        except (ValueError, OSError) as exc:
            fail(_escape(str(exc)))

    return wrapper


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _now(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise click.BadParameter("give a UTC offset, e.g. 2025-09-26T10:00+08:00", param_hint="--now")
    return parsed


def _pairs(values: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not FIELD=VALUE", param_hint="--set")
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw) if raw[:1] in "[{\"" or raw in ("true", "false", "null") else raw
        except json.JSONDecodeError:
            value = raw
        data[key.strip()] = value
    return data


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="ESTATEFLOW_DB", default=DEFAULT_DB, show_default=True,
              help="Database URL (env ESTATEFLOW_DB).")
@click.option("--workflows", envvar="ESTATEFLOW_WORKFLOWS", default=None,
              help="Directory or file of workflow YAML (env ESTATEFLOW_WORKFLOWS; default: shipped).")
@click.option("--actors", envvar="ESTATEFLOW_ACTORS", default=None,
              help="actors.yaml directory of people and roles (env ESTATEFLOW_ACTORS).")
@click.option("--config", envvar="ESTATEFLOW_CONFIG", default=None,
              help="estateflow.yaml: channels, quiet hours, digests (env ESTATEFLOW_CONFIG).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on read commands.")
@click.version_option(package_name="estateflow")
@click.pass_context
def main(ctx: click.Context, db: str, workflows: str | None, actors: str | None, config: str | None,
         as_json: bool) -> None:
    """estateflow — complaint, repair, move-in and renovation workflows with working-day deadlines."""
    ctx.obj = State(db, workflows, actors, as_json, config)


from estateflow import _cli_cases  # noqa: E402,F401  (registers the case commands)
from estateflow import _cli_admin  # noqa: E402,F401  (registers set-up and admin commands)
from estateflow import _cli_ops  # noqa: E402,F401  (registers operator commands)
from estateflow import _cli_reports  # noqa: E402,F401  (registers the report commands)
from estateflow import _cli_simulate  # noqa: E402,F401  (registers simulate)
from estateflow import _cli_data  # noqa: E402,F401  (registers import and purge)
from estateflow import _cli_workflows  # noqa: E402,F401  (registers workflows list|diff, migrate)


def run() -> None:  # pragma: no cover - console entry point alias
    main(prog_name="estateflow")

__all__ = ["main", "Path"]
