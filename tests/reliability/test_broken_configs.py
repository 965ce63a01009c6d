"""Bad input, configuration side: a corpus of broken ``estateflow.yaml`` files through the CLI.

Each file in ``tests/data/broken_configs`` follows the broken-workflow corpus convention
(``# expect: LINE:COL message (hint: ...)``, one line per problem the file must report; see
tests/test_validate_corpus.py). Each is given to ``estateflow run --config FILE``, the command
that loads the configuration, and must make it exit 1 with one ``FILE:LINE:COL: message`` line
per problem and no traceback, before any daemon starts. Adding a case means adding a file.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from estateflow import Engine
from estateflow.cli import main
from tests.test_validate_corpus import read_header

CORPUS = Path(__file__).resolve().parents[1] / "data" / "broken_configs"
FILES = sorted(CORPUS.glob("*.yaml"))
ROOT = Path(__file__).resolve().parents[2]
_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<column>\d+): (?P<message>.+?)(?: \(hint: (?P<hint>.+)\))?$")


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('configs') / 'estateflow.db'}"
    Engine(url, create=True).close()
    return url


@pytest.fixture(autouse=True)
def _no_secrets(monkeypatch) -> None:
    monkeypatch.delenv("EF_TEST_UNSET_SECRET", raising=False)


def run_with_config(db: str, path: Path):
    # --max-ticks: should a file ever load, the command returns instead of serving forever
    return CliRunner().invoke(main, ["--db", db, "run", "--config", str(path), "--interval", "0.01",
                                     "--max-ticks", "1"], catch_exceptions=False)


def test_corpus_is_there() -> None:
    assert len(FILES) >= 20
    for path in FILES:
        assert read_header(path).expectations, path.name
    # and its sibling, checked file by file in tests/test_validate_corpus.py
    assert len(list((CORPUS.parent / "broken_workflows").glob("*.yaml"))) >= 100


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_broken_config_gives_file_line_column_and_no_traceback(db: str, path: Path) -> None:
    result = run_with_config(db, path)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    reported = [m for m in map(_LINE.match, result.output.splitlines()) if m and m["file"] == str(path)]
    expected = read_header(path).expectations
    assert len(reported) == len(expected), result.output
    for want in expected:
        assert any((int(m["line"]), int(m["column"])) == (want.line, want.column)
                   and want.message in m["message"] and (want.hint is None or want.hint in (m["hint"] or ""))
                   for m in reported), f"{path.name}: expected {want}\nreported:\n{result.output}"
    assert "daemon" not in result.output, "the daemon started with a broken configuration"


def test_python_tag_in_config_is_never_executed(db: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    text = (CORPUS / "python_tag.yaml").read_text(encoding="utf-8")
    assert "/tmp/ESTATEFLOW_CFG_PWNED" in text
    copy = tmp_path / "estateflow.yaml"
    copy.write_text(text.replace("/tmp/ESTATEFLOW_CFG_PWNED", str(marker)), encoding="utf-8")
    assert run_with_config(db, copy).exit_code == 1
    assert not marker.exists(), "a YAML tag in the configuration ran a shell command"


@pytest.mark.parametrize("name", ["several_problems", "not_utf8_gbk", "billion_laughs"])
def test_real_process_reports_and_prints_no_traceback(db: str, name: str) -> None:
    path = CORPUS / f"{name}.yaml"
    env = {k: v for k, v in os.environ.items() if k != "EF_TEST_UNSET_SECRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", "estateflow", "--db", db, "run", "--config", str(path),
                           "--max-ticks", "1"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith(f"{path}:")]
    assert len(lines) == len(read_header(path).expectations), done.stderr
