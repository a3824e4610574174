"""The deployment examples in docs/examples/scale-out stay in step with the code: they parse, the
commands they run are ones `criteria` accepts, the spec they run is valid, and the variables they
set are the ones criteria reads. (Running them needs Docker, Kubernetes or Slurm.)"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml
from criteria.cli import app
from criteria.plugin.registry import get_registry
from criteria.spec.load import load_spec
from criteria.study.workers import INDEX_VARIABLES
from typer.testing import CliRunner

EXAMPLES = Path(__file__).parent.parent / "docs" / "examples" / "scale-out"


def accepts(args: list[str]) -> None:
    """``criteria ARGS`` parses (an unknown command or option fails), without running: ``--help``
    is acted on only once every argument before it has been read."""
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"criteria {' '.join(args)}: {result.output}"


def test_the_example_spec_is_valid_and_reads_its_storage_from_the_environment():
    spec = load_spec(EXAMPLES / "study.toml", get_registry())
    assert spec.study.storage == "env:CRITERIA_STORAGE" and spec.study.trials > 1


def test_docker_compose_runs_indexed_workers_against_postgres_and_mlflow():
    compose = yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())
    services = compose["services"]
    workers = {name: s for name, s in services.items() if name.startswith("worker-")}
    assert len(workers) >= 2 and {"postgres", "mlflow", "dashboard"} <= set(services)
    indices = sorted(int(s["environment"]["CRITERIA_WORKER_INDEX"]) for s in workers.values())
    assert indices == list(range(len(workers)))  # each its own sampler seed
    for service in workers.values():
        accepts(service["command"])
        assert service["environment"]["CRITERIA_STORAGE"].startswith("postgresql://criteria:${CRITERIA_DB_PASSWORD")
        assert service["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert "./study.toml:/study/study.toml:ro" in service["volumes"]
    assert services["dashboard"]["command"][-1].startswith("postgresql+psycopg2://criteria:")
    assert (EXAMPLES / compose["x-worker"]["build"]["context"] / compose["x-worker"]["build"]["dockerfile"]).is_file()


def test_the_kubernetes_job_is_indexed_with_one_worker_per_pod():
    job = yaml.safe_load((EXAMPLES / "kubernetes-job.yaml").read_text())
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"  # JOB_COMPLETION_INDEX
    assert spec["parallelism"] == spec["completions"] > 1
    container = spec["template"]["spec"]["containers"][0]
    accepts(container["args"])
    assert container["envFrom"][0]["secretRef"]["name"] == "criteria-storage"
    assert "JOB_COMPLETION_INDEX" in INDEX_VARIABLES


def test_the_slurm_script_is_an_array_of_criteria_runs():
    script = (EXAMPLES / "slurm-array.sh").read_text()
    subprocess.run(["bash", "-n", str(EXAMPLES / "slurm-array.sh")], check=True)
    assert re.search(r"^#SBATCH --array=0-\d+$", script, re.MULTILINE) and "SLURM_ARRAY_TASK_ID" in INDEX_VARIABLES
    command = re.search(r"^srun criteria (.+)$", script, re.MULTILINE).group(1)
    accepts([arg.replace("${SLURM_JOB_NAME}", "job") for arg in shlex.split(command)])
    accepts(["run", "docs/examples/scale-out/study.toml", "--workers", "auto"])  # the multi-GPU variant
