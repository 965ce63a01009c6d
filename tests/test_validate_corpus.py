"""A corpus of broken workflow files, one per validation rule.

Each file in ``tests/data/broken_workflows`` is a small workflow with one defect (a few files
have several, to check that every problem is reported at once). Its header says what must be
reported::

    # expect: 29:20 unknown role 'manger' (hint: did you mean 'manager'?)
    # expect: ...                 (more lines when the file has several defects)
    # via: registry               (optional: load through WorkflowRegistry, for cross-file rules)
    # xfail: reason               (optional: a known validator bug; the expectation is the fix)

``LINE:COLUMN`` must match a reported problem exactly, the text after it must be part of that
problem's message and the ``(hint: ...)`` text, if given, part of its hint. Adding a rule means
adding a file; no test code changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from estateflow.cli import main
from estateflow.engine._errors import Problem, WorkflowError
from estateflow.engine._registry import WorkflowRegistry, default_workflow_dir
from estateflow.engine._validate import load_workflow, load_workflow_file

CORPUS = Path(__file__).parent / "data" / "broken_workflows"
FILES = sorted(CORPUS.glob("*.yaml"))
SHIPPED = sorted(default_workflow_dir().glob("*.yaml"))

_EXPECT = re.compile(r"^# expect: (\d+):(\d+) (.+?)(?: \(hint: (.+)\))?$")


@dataclass(frozen=True)
class Expectation:
    line: int
    column: int
    message: str
    hint: str | None

    def matches(self, problem: Problem) -> bool:
        return (problem.line == self.line and problem.column == self.column
                and self.message in problem.message
                and (self.hint is None or self.hint in problem.hint))

    def __str__(self) -> str:
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{self.line}:{self.column} {self.message}{hint}"


@dataclass(frozen=True)
class Header:
    expectations: list[Expectation]
    via_registry: bool
    xfail: str | None


def read_header(path: Path) -> Header:
    # Headers are ASCII; decode leniently because one file is deliberately not UTF-8.
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    assert lines and lines[0].startswith("# expect: "), f"{path.name}: line 1 must be '# expect: ...'"
    expectations, via_registry, xfail = [], False, None
    for line in lines:
        if not line.startswith("#"):
            break
        if line.startswith("# expect: "):
            match = _EXPECT.match(line)
            assert match, f"{path.name}: cannot read {line!r}; write '# expect: LINE:COL message'"
            expectations.append(Expectation(int(match[1]), int(match[2]), match[3], match[4]))
        elif line == "# via: registry":
            via_registry = True
        elif line.startswith("# xfail: "):
            xfail = line[len("# xfail: "):]
    return Header(expectations, via_registry, xfail)


def load(path: Path, header: Header) -> None:
    if header.via_registry:
        WorkflowRegistry().load_paths([path])
    else:
        load_workflow_file(path)


def problems_of(path: Path, header: Header | None = None) -> list[Problem]:
    header = header or read_header(path)
    with pytest.raises(WorkflowError) as caught:
        load(path, header)
    return caught.value.problems


def _describe(problems: list[Problem]) -> str:
    return "\n".join(f"  {p}" for p in problems) or "  (none)"


def _corpus_params() -> list:
    params = []
    for path in FILES:
        header = read_header(path)
        marks = [pytest.mark.xfail(strict=True, reason=header.xfail)] if header.xfail else []
        params.append(pytest.param(path, id=path.stem, marks=marks))
    return params


# -- the corpus ------------------------------------------------------------------------------
def test_corpus_is_there() -> None:
    assert len(FILES) >= 40
    for path in FILES:
        assert read_header(path).expectations, path.name


@pytest.mark.parametrize("path", _corpus_params())
def test_broken_file_reports_expected_problem(path: Path) -> None:
    header = read_header(path)
    started = time.perf_counter()
    problems = problems_of(path, header)
    elapsed = time.perf_counter() - started

    assert problems, "WorkflowError raised with no problems"
    for expected in header.expectations:
        assert any(expected.matches(p) for p in problems), (
            f"{path.name}: expected {expected}\nreported:\n{_describe(problems)}")
    # every problem names the file, points inside it, and the list reads top to bottom
    line_count = len(path.read_bytes().splitlines())
    for problem in problems:
        assert problem.file == str(path)
        assert 1 <= problem.line <= line_count + 1 and problem.column >= 1, str(problem)
        assert problem.message and "Traceback" not in problem.message
    positions = [(p.line, p.column) for p in problems]
    assert positions == sorted(positions), f"problems not sorted by position:\n{_describe(problems)}"
    assert elapsed < 5, f"{path.name} took {elapsed:.1f}s to refuse"


def test_one_defect_gives_one_problem() -> None:
    """A single typo must not echo as 'unreachable' / 'no way out' problems elsewhere."""
    for name in ("unknown_dest_state", "unknown_source_state", "unknown_role", "unknown_set_field",
                 "clock_unknown_state", "band_overlap_at_bound", "condition_unknown_variable"):
        problems = problems_of(CORPUS / f"{name}.yaml")
        assert len(problems) == 1, f"{name}:\n{_describe(problems)}"


# -- rules that need more than a position ------------------------------------------------------
def test_python_tag_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = (CORPUS / "python_object_tag.yaml").read_text(encoding="utf-8")
    assert "/tmp/ESTATEFLOW_PWNED" in text
    broken = tmp_path / "tagged.yaml"
    broken.write_text(text.replace("/tmp/ESTATEFLOW_PWNED", str(marker)), encoding="utf-8")
    for attempt in (broken, CORPUS / "python_object_tag.yaml"):
        problems = problems_of(attempt)
        assert any("!!python/object/apply:os.system" in p.message for p in problems)
    assert not marker.exists(), "the YAML tag ran a shell command"
    # the other constructor tags are refused the same way, also as plain text
    for tag in ("!!python/object:os.system", "!!python/object/new:os.system [x]",
                "!!python/name:os.system", "!!python/module:os", "!!binary aGk="):
        with pytest.raises(WorkflowError) as caught:
            load_workflow(f"name: {tag}\n", "t.yaml")
        assert any("is not allowed" in p.message for p in caught.value.problems), tag


def test_billion_laughs_is_refused_quickly() -> None:
    started = time.perf_counter()
    problems = problems_of(CORPUS / "billion_laughs.yaml")
    assert time.perf_counter() - started < 5
    assert [p.message for p in problems] == ["document expands to more than 200000 values"]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"   \n", b"# only a comment\n", b"---\n"],
                         ids=["zero_bytes", "newlines", "spaces", "comment", "document_marker"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.yaml"
    path.write_bytes(content)
    with pytest.raises(WorkflowError) as caught:
        load_workflow_file(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.column) == (str(path), 1, 1)
    assert "empty" in problem.message


def test_spawn_of_unknown_workflow_is_reported_by_the_registry() -> None:
    """The rule fires (the exact position is the xfail case in the corpus)."""
    path = CORPUS / "spawn_unknown_workflow.yaml"
    load_workflow_file(path)  # on its own the file is fine: the target may be in another file
    [problem] = problems_of(path)
    assert problem.file == str(path)
    assert "spawns unknown workflow 'repiar'" in problem.message
    assert "demo" in problem.hint  # the known workflows are listed


def test_spawn_resolves_against_other_loaded_files(tmp_path: Path) -> None:
    text = (CORPUS / "spawn_unknown_workflow.yaml").read_text(encoding="utf-8")
    (tmp_path / "demo.yaml").write_text(text.replace("workflow: repiar", "workflow: repair"),
                                        encoding="utf-8")
    registry = WorkflowRegistry()
    registry.load_paths([tmp_path, default_workflow_dir() / "repair.yaml"])
    assert {"demo", "repair"} <= set(registry.names)


def test_not_utf8_points_at_the_first_bad_byte() -> None:
    path = CORPUS / "not_utf8_gbk.yaml"
    with pytest.raises(UnicodeDecodeError):
        path.read_text(encoding="utf-8")
    [problem] = problems_of(path)
    assert "GBK" in problem.hint


def test_several_defects_are_all_reported_sorted_by_line() -> None:
    for name in ("several_problems", "several_schema_problems", "several_yaml_problems"):
        path = CORPUS / f"{name}.yaml"
        header = read_header(path)
        problems = problems_of(path, header)
        assert len(header.expectations) >= 3
        assert len(problems) == len(header.expectations), f"{name}:\n{_describe(problems)}"
        lines = [p.line for p in problems]
        assert lines == sorted(lines) and len(set(lines)) == len(lines), lines


def test_error_text_lists_every_problem() -> None:
    path = CORPUS / "several_problems.yaml"
    with pytest.raises(WorkflowError) as caught:
        load_workflow_file(path)
    text = str(caught.value)
    assert text.startswith("5 problems in workflow:")
    for problem in caught.value.problems:
        assert f"{path}:{problem.line}:{problem.column}: {problem.message}" in text


# -- the shipped workflows are valid ---------------------------------------------------------------
def test_four_shipped_workflows() -> None:
    assert [p.stem for p in SHIPPED] == ["complaint", "move_in", "renovation", "repair"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_workflow_is_valid(path: Path) -> None:
    spec = load_workflow_file(path)
    assert spec.name == path.stem
    assert spec.initial_state in spec.states


def test_shipped_workflows_load_together() -> None:
    registry = WorkflowRegistry()
    registry.load_paths([default_workflow_dir()])  # move_in spawns repair: cross-file check
    assert registry.names == ["complaint", "move_in", "renovation", "repair"]


# -- the command line ------------------------------------------------------------------------------
_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<message>.+)$")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_validate_broken_file() -> None:
    path = CORPUS / "several_problems.yaml"
    result = invoke("validate", str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 5
    for line, expected in zip(lines, read_header(path).expectations):
        match = _LINE.match(line)
        assert match, line
        assert match["file"] == str(path)
        assert (int(match["line"]), int(match["column"])) == (expected.line, expected.column)
        assert expected.message in match["message"]
    assert "(hint: did you mean 'working'?)" in result.output


def test_cli_validate_json() -> None:
    path = CORPUS / "unknown_role.yaml"
    result = invoke("--json", "validate", str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    data = json.loads(result.output)
    assert data == [{"file": str(path), "line": 29, "column": 20, "message": "unknown role 'manger'",
                     "hint": "did you mean 'manager'?"}]


def test_cli_validate_json_several() -> None:
    path = CORPUS / "several_problems.yaml"
    data = json.loads(invoke("--json", "validate", str(path)).output)
    assert [(d["line"], d["column"]) for d in data] == [
        (e.line, e.column) for e in read_header(path).expectations]
    for item in data:
        assert set(item) == {"file", "line", "column", "message", "hint"}


def test_cli_validate_whole_corpus_at_once() -> None:
    """Every broken file in one run: one line per problem, from every file, and no crash."""
    result = invoke("validate", str(CORPUS))
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    reported = {Path(m["file"]).name for m in map(_LINE.match, result.output.splitlines()) if m}
    assert reported == {p.name for p in FILES}
    for line in result.output.strip().splitlines():
        assert _LINE.match(line), line


def test_cli_validate_valid_files() -> None:
    result = invoke("validate", *map(str, SHIPPED))
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok")
    assert "complaint, move_in, renovation, repair" in result.output
    result = invoke("--json", "validate", str(SHIPPED[0]))
    assert result.exit_code == 0
    assert json.loads(result.output) == []


def test_cli_validate_valid_and_broken_together() -> None:
    broken = CORPUS / "unknown_dest_state.yaml"
    result = invoke("validate", str(SHIPPED[0]), str(broken))
    assert result.exit_code == 1
    assert f"{broken}:24:11: unknown state 'wroking'" in result.output
    assert not result.output.startswith("ok")  # nothing is loaded when any file is broken


def test_real_process_prints_no_traceback() -> None:
    path = CORPUS / "deep_nesting.yaml"
    root = Path(__file__).resolve().parent.parent  # this checkout, not whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    run = subprocess.run(
        [sys.executable, "-c", "from estateflow.cli import run; run()", "validate", str(path)],
        capture_output=True, text=True, timeout=120, check=False, cwd=root, env=env)
    assert run.returncode == 1
    assert "Traceback" not in run.stdout + run.stderr
    assert f"{path}:1:1: document is nested too deeply" in run.stderr
