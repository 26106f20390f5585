"""dvc.yaml declares exactly the code each stage runs, as derived from its imports."""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _load_code_deps():
    spec = importlib.util.spec_from_file_location("code_deps", REPO / ".ci" / "code_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


code_deps = _load_code_deps()


def test_dvc_yaml_declares_exactly_the_code_each_stage_runs() -> None:
    assert code_deps.problems(REPO) == []


def test_every_stage_runs_a_module_of_the_package() -> None:
    pipeline = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    assert set(code_deps.stage_entries(pipeline)) == set(pipeline["stages"])


def _write(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body), encoding="utf-8")


@pytest.fixture
def toy_repo(tmp_path: Path) -> Path:
    """A package whose stage imports `a` at the top, `b` inside a function (through a relative
    import), and `b` imports `c`: all four run when the stage does; `unused` does not."""
    _write(
        tmp_path,
        {
            "src/rnn_sentiment/__init__.py": "",
            "src/rnn_sentiment/a.py": "import json\n",
            "src/rnn_sentiment/b.py": "from rnn_sentiment import c\n",
            "src/rnn_sentiment/c.py": "",
            "src/rnn_sentiment/unused.py": "",
            "src/rnn_sentiment/stages/__init__.py": "",
            "src/rnn_sentiment/stages/s.py": """\
                from rnn_sentiment.a import dumps

                def main():
                    from ..b import thing
            """,
            "dvc.yaml": """\
                stages:
                  s:
                    cmd: python -m rnn_sentiment.stages.s --out x
                    deps:
                      - src/rnn_sentiment/stages/s.py
                      - src/rnn_sentiment/unused.py
                      - data/input.csv
                    outs:
                      - x
            """,
        },
    )
    return tmp_path


def test_code_files_follow_imports_transitively(toy_repo: Path) -> None:
    assert code_deps.code_files(toy_repo, "rnn_sentiment.stages.s") == [
        "src/rnn_sentiment/__init__.py",
        "src/rnn_sentiment/a.py",
        "src/rnn_sentiment/b.py",
        "src/rnn_sentiment/c.py",
        "src/rnn_sentiment/stages/__init__.py",
        "src/rnn_sentiment/stages/s.py",
    ]


def test_under_and_over_declared_code_is_reported_and_rewritten(toy_repo: Path) -> None:
    found = code_deps.problems(toy_repo)
    assert len(found) == 2
    assert "does not declare" in found[0] and "src/rnn_sentiment/c.py" in found[0]
    assert "no longer imports" in found[1] and "src/rnn_sentiment/unused.py" in found[1]

    path = toy_repo / "dvc.yaml"
    pipeline = yaml.safe_load(path.read_text(encoding="utf-8"))
    path.write_text(code_deps.rewrite(path.read_text(), code_deps.expected(toy_repo, pipeline)))
    assert code_deps.problems(toy_repo) == []
    deps = yaml.safe_load(path.read_text(encoding="utf-8"))["stages"]["s"]["deps"]
    assert "data/input.csv" in deps  # data deps are left alone
