"""Derive each DVC stage's code dependencies from what its module really imports.

A stage runs `python -m rnn_sentiment.stages.NAME`; the code it runs is that module plus every
module of the package it imports, transitively (imports inside functions too: they run), plus the
`__init__.py` of each package on the way. dvc.yaml must declare exactly those files, or a change
to one of them leaves the stage's outputs describing code that no longer exists.

    python .ci/code_deps.py           # exit 1 and list the differences if dvc.yaml is off
    python .ci/code_deps.py --write   # rewrite the code deps in dvc.yaml to match
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

PACKAGE = "rnn_sentiment"
SOURCE = Path("src")
MODULE_CMD = re.compile(rf"python -m ({PACKAGE}(?:\.\w+)+)")
CODE_DEP = re.compile(rf"^(\s+)- ({SOURCE.as_posix()}/\S+\.py)\s*$")


def module_path(root: Path, module: str) -> Path | None:
    """The file of a package module (`a.b` -> src/a/b.py or src/a/b/__init__.py), if it is one."""
    base = root / SOURCE / Path(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported_names(path: Path, module: str) -> set[str]:
    """Every module name an import statement in `path` may refer to, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            # `from pkg import name`: name may be a submodule.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _with_parents(module: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`, `a.b.c`]: importing a module runs each parent package first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def code_files(root: Path, entry: str) -> list[str]:
    """The package files that `python -m ENTRY` runs, as sorted repo-relative posix paths."""
    seen: set[str] = set()
    stack = [entry]
    while stack:
        for module in _with_parents(stack.pop()):
            if module in seen or not module.startswith(PACKAGE):
                continue
            path = module_path(root, module)
            if path is None:
                continue
            seen.add(module)
            stack.extend(_imported_names(path, module))
    files = {module_path(root, module).relative_to(root).as_posix() for module in seen}
    return sorted(files)


def stage_entries(pipeline: dict) -> dict[str, str]:
    """The package module each stage runs, from its `cmd`."""
    entries = {}
    for name, stage in pipeline["stages"].items():
        cmd = " ".join(stage["cmd"]) if isinstance(stage["cmd"], list) else stage["cmd"]
        if match := MODULE_CMD.search(cmd):
            entries[name] = match.group(1)
    return entries


def declared(pipeline: dict) -> dict[str, list[str]]:
    """The code files each stage lists in its deps."""
    return {
        name: sorted(
            dep
            for dep in stage.get("deps", [])
            if isinstance(dep, str) and dep.startswith(f"{SOURCE.as_posix()}/")
        )
        for name, stage in pipeline["stages"].items()
    }


def expected(root: Path, pipeline: dict) -> dict[str, list[str]]:
    return {name: code_files(root, entry) for name, entry in stage_entries(pipeline).items()}


def problems(root: Path) -> list[str]:
    """Each stage whose declared code deps differ from what it imports, and how."""
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    found = []
    have = declared(pipeline)
    for name, files in expected(root, pipeline).items():
        if missing := sorted(set(files) - set(have[name])):
            found.append(f"{name}: runs but does not declare {', '.join(missing)}")
        if extra := sorted(set(have[name]) - set(files)):
            found.append(f"{name}: declares {', '.join(extra)} but no longer imports it")
    return found


def rewrite(text: str, deps: dict[str, list[str]]) -> str:
    """dvc.yaml's text with each stage's code deps replaced by `deps[stage]`, in place of the
    first code dep it lists (a stage must list at least one); everything else is kept as is."""
    lines, out = text.splitlines(keepends=True), []
    stage, written = None, set()
    for line in lines:
        if heading := re.match(r"^  (\w+):\s*$", line):
            stage = heading.group(1)
        match = CODE_DEP.match(line)
        if match and stage in deps:
            if stage not in written:
                out.extend(f"{match.group(1)}- {path}\n" for path in deps[stage])
                written.add(stage)
            continue
        out.append(line)
    if missing := sorted(set(deps) - written):
        raise SystemExit(f"stages without any code dep to replace in dvc.yaml: {missing}")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    if args.write:
        path = root / "dvc.yaml"
        pipeline = yaml.safe_load(path.read_text(encoding="utf-8"))
        path.write_text(rewrite(path.read_text(encoding="utf-8"), expected(root, pipeline)))
    found = problems(root)
    for problem in found:
        print(f"dvc.yaml code deps: {problem}", file=sys.stderr)
    if found:
        print("run `python .ci/code_deps.py --write`, then `dvc repro`", file=sys.stderr)
        return 1
    print("dvc.yaml declares exactly the code each stage runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
