"""CI's `pipeline` job (.github/workflows/ci.yml), its steps run as written against a DVC remote on
the S3-compatible store: it passes on a pushed pipeline, fails on a stale one, and reports the
metrics and params of a change against its base."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.sample_repo import REPO, dvc, make_sample_repo, repro, run, set_params
from tests.team.conftest import BUCKET, unique_name
from tests.team.servers import S3
from tests.team.test_dvc_remote import commit

pytestmark = [pytest.mark.e2e, pytest.mark.team]

CHECKS = ("The DVC remote", "Pull the pipeline's outputs", "The pipeline is up to date")


def job_steps() -> dict[str, str]:
    """The `run:` script of each step of the `pipeline` job, by the start of its name."""
    workflow = yaml.safe_load((REPO / ".github/workflows/ci.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["pipeline"]["steps"]
    return {
        prefix: step["run"]
        for step in steps
        if "run" in step
        for prefix in CHECKS
        if step["name"].startswith(prefix)
    }


def run_checks(clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The job's remote, pull and status steps in `clone`, stopping at the first that fails."""
    script = "set -e\n" + "\n".join(job_steps()[prefix] for prefix in CHECKS)
    return subprocess.run(
        ["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, check=False
    )


def test_the_ci_pipeline_job(s3_env: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = f"s3://{BUCKET}/{unique_name('ci')}"
    repo = make_sample_repo(tmp_path)
    # One member's remote, in their .dvc/config.local: the job must not need it committed.
    dvc(repo, "remote", "add", "--local", "-d", "mine", remote)
    dvc(repo, "remote", "modify", "--local", "mine", "endpointurl", s3_env.endpoint)
    repro(repo)
    commit(repo, "base")
    base = run(["git", "rev-parse", "HEAD"], repo).strip()
    set_params(repo, **{"train.lr": 0.03})
    assert repro(repo) == ["validate", "train", "evaluate"]
    commit(repo, "a higher learning rate")
    dvc(repo, "push")

    env = {**os.environ, "DVC_REMOTE_URL": remote, "DVC_REMOTE_ENDPOINT": s3_env.endpoint}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    clone = tmp_path / "ci"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    done = run_checks(clone, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (clone / "models/model.pt").is_file()

    with monkeypatch.context() as inside:
        inside.chdir(clone)
        text = _report_module().report(base)
    assert "| train.lr" in text and "0.03" in text
    assert "| metrics/eval.json" in text and "accuracy" in text

    set_params(repo, **{"train.lr": 0.02})  # committed without `dvc repro`: stale
    commit(repo, "a stale change")
    run(["git", "pull", "-q", str(repo), "HEAD"], clone)
    done = run_checks(clone, env)
    assert done.returncode != 0
    assert "train" in done.stdout and "changed" in done.stdout


def _report_module():
    spec = importlib.util.spec_from_file_location(
        "pipeline_report", REPO / ".ci/pipeline_report.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
