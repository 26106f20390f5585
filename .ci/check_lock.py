"""Fail when dvc.lock is out of date with dvc.yaml, params.yaml or the code the stages run, or
when dvc.yaml declares other code than each stage imports (`code_deps.py`).

Needs no data: it compares what dvc.lock recorded (commands, param values, code checksums) with
what the repository holds now, so CI can tell that someone changed a stage or a param and forgot
to run `dvc repro` and commit the lock.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import yaml
from code_deps import problems as code_dep_problems

VAR = re.compile(r"\$\{([\w.]+)\}")


def render(value: str, variables: dict) -> str:
    """Substitute `${a.b}` from dvc.yaml's `vars`, as DVC does."""

    def lookup(match: re.Match) -> str:
        node = variables
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return VAR.sub(lookup, value)


def dotted(params: dict, key: str) -> object:
    node = params
    for part in key.split("."):
        node = node[part]
    return node


def problems(root: Path) -> list[str]:
    pipeline = yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8"))
    lock = yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    variables = {k: v for block in pipeline.get("vars", []) for k, v in block.items()}
    found = []
    if set(pipeline["stages"]) != set(lock):
        found.append(f"stages differ: {sorted(pipeline['stages'])} vs locked {sorted(lock)}")
    for name, stage in pipeline["stages"].items():
        locked = lock.get(name)
        if locked is None:
            continue
        if " ".join(render(stage["cmd"], variables).split()) != " ".join(locked["cmd"].split()):
            found.append(f"{name}: command changed")
        recorded = locked.get("params", {}).get("params.yaml", {})
        keys = [key for key in stage.get("params", []) if isinstance(key, str)]
        if keys and set(keys) != set(recorded):
            found.append(f"{name}: declared params differ from the locked ones")
        if not keys and recorded and recorded != params:  # `- params.yaml:` tracks the whole file
            found.append(f"{name}: params.yaml changed since the lock")
        for key, value in recorded.items() if keys else ():
            if dotted(params, key) != value:
                found.append(f"{name}: {key} is {dotted(params, key)!r}, locked {value!r}")
        for dep in locked.get("deps", []):
            path = root / dep["path"]
            code = dep["path"].startswith("src/") and path.is_file()
            if code and hashlib.md5(path.read_bytes()).hexdigest() != dep["md5"]:
                found.append(f"{name}: {dep['path']} changed since the lock")
    return found


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    found = code_dep_problems(root) + problems(root)
    for problem in found:
        print(f"dvc.lock is stale: {problem}", file=sys.stderr)
    if found:
        print("run `dvc repro` and commit dvc.lock", file=sys.stderr)
        return 1
    print("dvc.lock is up to date with dvc.yaml, params.yaml and src/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
