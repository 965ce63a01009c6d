import inspect
import re
from pathlib import Path

import estateflow
from estateflow import EstateflowError

README = Path(__file__).resolve().parents[1] / "README.md"


def public_exceptions():
    return {
        name: obj
        for name, obj in ((n, getattr(estateflow, n)) for n in estateflow.__all__)
        if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_")
    }


def test_every_public_exception_derives_from_estateflow_error_and_a_builtin():
    for name, cls in public_exceptions().items():
        assert issubclass(cls, EstateflowError), name
        if cls is not EstateflowError:
            builtins = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (Exception, BaseException, object)]
            assert builtins, f"{name} inherits no matching builtin"


def test_every_public_exception_is_in_the_readme_tree():
    text = README.read_text(encoding="utf-8")
    tree = text.split("## Exception tree", 1)[1]
    for name in public_exceptions():
        assert re.search(rf"\b{name}\b", tree), f"{name} missing from README exception tree"


def test_messages_are_built_from_arguments():
    err = estateflow.CaseNotFound("TS-2026-000001")
    assert "TS-2026-000001" in str(err)
    assert isinstance(err, LookupError)
    conflict = estateflow.ConflictError("TS-2026-000001", 3, 4)
    assert "expected version 3" in str(conflict)
