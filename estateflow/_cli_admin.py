"""CLI commands for set-up and administration: init, validate, graph, db upgrade, demo."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from estateflow.cli import State, console, emit_json, handle_errors, main

pass_state = click.make_pass_decorator(State)


@main.command()
@click.option("--copy-workflows", "copy_to", default=None, metavar="DIR",
              help="Copy the shipped workflows into DIR for editing (then use --workflows DIR).")
@pass_state
@handle_errors
def init(state: State, copy_to: str | None) -> None:
    """Create (or migrate) the database and record the workflows."""
    from estateflow.engine._registry import default_workflow_dir

    if copy_to:
        target = Path(copy_to)
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(default_workflow_dir().glob("*.yaml")):
            dest = target / source.name
            if dest.exists():
                console(stderr=True).print(f"kept existing {dest}")
                continue
            shutil.copy(source, dest)
        state.workflows = state.workflows or str(target)
    with state.engine(create=True) as engine:
        warnings = engine.load()
        names = engine.workflows().names
        where = engine.url.database if engine.url.get_backend_name() == "sqlite" else engine.url.render_as_string(hide_password=True)
    for warning in warnings:
        console(stderr=True).print(f"[yellow]warning:[/] {warning}")
    console().print(f"database ready at {where}; workflows: {', '.join(names)}")


@main.command()
@click.argument("files", nargs=-1, type=click.Path(), required=True)
@pass_state
@handle_errors
def validate(state: State, files: tuple[str, ...]) -> None:
    """Check workflow files; print FILE:LINE:COLUMN: message for every problem."""
    from estateflow.engine._errors import WorkflowError
    from estateflow.engine._registry import WorkflowRegistry

    registry = WorkflowRegistry()
    try:
        registry.load_paths(files)
    except WorkflowError as exc:
        if state.json:
            emit_json([{"file": p.file, "line": p.line, "column": p.column, "message": p.message,
                        "hint": p.hint} for p in exc.problems])
            raise SystemExit(1) from None
        raise
    if state.json:
        emit_json([])
    else:
        console().print(f"ok: {', '.join(registry.names)}")


@main.command()
@click.argument("workflow")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="en", show_default=True)
@pass_state
@handle_errors
def graph(state: State, workflow: str, fmt: str, lang: str) -> None:
    """Print a workflow as a Mermaid or DOT diagram (WORKFLOW: a name or a YAML file)."""
    from estateflow.engine._graph import to_dot, to_mermaid
    from estateflow.engine._registry import WorkflowRegistry, default_workflow_dir

    registry = WorkflowRegistry()
    if Path(workflow).is_file():
        registry.load_paths([workflow])
        spec = registry.file_spec(registry.file_names[0])
    else:
        registry.load_paths([state.workflows or default_workflow_dir()])
        spec = registry.file_spec(workflow)
    click.echo((to_mermaid if fmt == "mermaid" else to_dot)(spec, lang), nl=False)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command("upgrade")
@pass_state
@handle_errors
def db_upgrade(state: State) -> None:
    """Create or migrate the schema to this version of estateflow."""
    from estateflow.engine._db import connect, describe_url, upgrade_schema

    engine = connect(state.db)
    try:
        revision = upgrade_schema(engine)
        console().print(f"{describe_url(engine.url)} at schema revision {revision}")
    finally:
        engine.dispose()


@main.command()
@click.option("--db", "demo_db", default="sqlite:///estateflow-demo.db", show_default=True,
              help="Where the demo writes (recreated each run when it is the default file).")
@pass_state
@handle_errors
def demo(state: State, demo_db: str) -> None:
    """Open cases in all four workflows, walk them through their lifecycles, print the register."""
    from estateflow._demo import run_demo

    run_demo(demo_db, console(), as_json=state.json)
