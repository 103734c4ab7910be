"""The workflow on a real single-node SLURM cluster, through profiles/slurm.

The test starts its own cluster (tests/slurm_cluster.py: munged, slurmctld and slurmd from
Debian's slurm-wlm and munge packages, installed in CI by .ci/install-slurm.sh), runs the
LFW-mini benchmark with the slurm executor, checks that every job of the DAG ran inside a SLURM
job the controller completed, and that the result tables are byte for byte those of a local run
of the same config. Skipped, with the reason printed, where the SLURM binaries or the real face
fixtures are missing.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, snakemake
from slurm_cluster import SlurmCluster, slurm  # noqa: F401  (slurm: the cluster fixture)

PROFILE = REPO / "profiles" / "slurm"
CONFIG_ARGS = ("--configfile", "config/lfw.yaml", "mini.yaml")
SLURM_ARGS = (
    # no accounting on the test cluster: job states come from squeue (MinJobAge keeps finished
    # jobs listed); a short first status check keeps the test short
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", "2",
    "--slurm-no-account",
    "--slurm-keep-successful-logs",  # the test reads what ran inside each SLURM job
)
RUN_TIMEOUT = 1500


def snakemake_exe() -> str:
    exe = Path(sys.executable).parent / "snakemake"
    return str(exe) if exe.exists() else "snakemake"


def lfw_mini_workdir(dest: Path, shared_data: Path) -> Path:
    """A copy of the workflow with an override config for the local LFW-mini fixture, restricted
    to one mask type to keep the test short."""
    work = copy_workflow(dest)
    mini = shared_data / "lfw-mini"
    override = {
        "datasets": {
            "lfw": {
                "shards": 2,
                "masks": ["surgical_blue"],
                "files": {
                    "images": {"path": str(mini / "lfw-deepfunneled-mini.tgz"), "md5": None,
                               "sha256": "5bdb8e9a87fabee45d1373a15f79c9e2fa235968228b7c01a80f32dba2e4bcad"},
                    "pairs": {"path": str(mini / "pairs.txt"), "md5": None},
                },
            }
        }
    }
    (work / "mini.yaml").write_text(yaml.safe_dump(override))
    return work


def job_blocks(output: str) -> list[tuple[bool, str, str | None]]:
    """(run in this process?, rule, output line or None) of every job snakemake printed:
    `rule x:` is a job handed to the executor, `localrule x:` one run by the printing process."""
    jobs: list[list] = []
    current = None
    for line in output.splitlines():
        start = re.match(r"^\s*(local)?rule (\w+):$", line)
        if start:
            current = [bool(start.group(1)), start.group(2), None]
            jobs.append(current)
        elif current is not None and current[2] is None and line.strip().startswith("output: "):
            current[2] = line.strip()[len("output: "):]
        elif not line.strip():
            current = None
    return [tuple(job) for job in jobs]


def workflow_rules(work: Path, *config_args: str) -> set[str]:
    proc = subprocess.run([snakemake_exe(), "--list-rules", *config_args], cwd=work,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {line.strip() for line in proc.stdout.splitlines() if line.strip() and not line[0].isspace()}


def test_profile_gives_training_its_memory_and_the_cpus_of_its_threads(tmp_path):
    """A `resources:` cap in the profile would cap every job's memory (fine-tuning's 32 GB
    included), and its `cores` every job's threads: training asks for its CPUs itself."""
    work = copy_workflow(tmp_path / "wf")
    (work / "threads.yaml").write_text(yaml.safe_dump({"models": {"dlib_finetuned": {"train": {"threads": 8}}}}))
    out = snakemake(work, "-n", "--profile", str(PROFILE), "--configfile", "config/lfw.yaml",
                    "config/lfw-finetune.yaml", "threads.yaml").stdout
    # the finetune job of dlib_finetuned (the other finetune model keeps one thread; jobs print in no set order)
    blocks = re.findall(r"^rule finetune:\n((?:^ +[^\n]*\n)+)", out, re.M)
    finetune = [b for b in blocks if "wildcards: model=dlib_finetuned" in b]
    assert len(finetune) == 1, out[-3000:]
    resources = dict(re.findall(r"(\w+)=([^,]*)", re.search(r"^ +resources: ([^\n]*)", finetune[0], re.M)[1]))
    assert resources["mem_mb"] == "32000" and resources["cpus_per_task"] == "8" and resources["gpu"] == "1"


def test_profile_memory_grows_on_each_retry():
    """A job killed for memory is resubmitted with more: each rule's memory in the profile grows
    with the attempt (evaluated as Snakemake does, a Python expression of `attempt`)."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert profile["retries"] >= 1
    for rule, resources in profile["set-resources"].items():
        memory = [eval(str(resources["mem_mb"]), {"attempt": attempt}) for attempt in (1, 2, 3)]
        assert memory[0] < memory[1] <= memory[2], (rule, memory)


def test_profile_names_only_rules_of_the_workflow(tmp_path):
    """Snakemake ignores unknown rule names in --set-resources/--groups: a renamed rule would
    silently lose its resources or its group."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    named = set(profile.get("set-threads", {})) | set(profile.get("set-resources", {})) | set(profile.get("groups", {}))
    work = copy_workflow(tmp_path / "wf")
    # rules of optional parts exist only when their config section does (the attribute study)
    rules = workflow_rules(work) | workflow_rules(work, "--configfile", "config/utkface.yaml")
    assert named <= rules, f"profiles/slurm names rules the workflow lacks: {sorted(named - rules)}"
    assert set(profile.get("group-components", {})) <= set(profile.get("groups", {}).values())


def asks_for_gpu(resources: dict) -> bool:
    return bool(resources.get("gpu")) or "gpu" in str(resources.get("gres", ""))


def test_training_rules_and_only_they_ask_for_a_gpu():
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    gpu_rules = {rule for rule, res in profile["set-resources"].items() if asks_for_gpu(res)}
    assert gpu_rules == {"finetune", "attributes_cnn"}
    assert not asks_for_gpu(profile.get("default-resources", {}))
    assert not asks_for_gpu(profile.get("resources", {}))


def cpu_only_profile(dest: Path) -> Path:
    """profiles/slurm as it is, except that training asks for no GPU (the test node has none)."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    for resources in profile["set-resources"].values():
        resources.pop("gpu", None)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return dest


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory, shared_data, slurm: SlurmCluster):
    work = lfw_mini_workdir(tmp_path_factory.mktemp("slurm") / "wf", shared_data)
    profile = cpu_only_profile(work / "profile-cpu")
    args = (
        "all", "--profile", str(profile), *CONFIG_ARGS, *SLURM_ARGS,
        # The profile is written for real nodes. On this one, a group job may use its CPUs and
        # memory, and each job one CPU, so that two jobs run at once on a two-CPU machine.
        "--cores", str(slurm.cpus), "--resources", f"mem_mb={slurm.real_memory}", "--max-threads", "1",
    )

    def run(*extra: str) -> str:
        proc = subprocess.run([snakemake_exe(), *extra, *args], cwd=work, env=slurm.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=RUN_TIMEOUT)
        if proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(extra)} on SLURM failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-8000:]}\n{slurm.diagnostics()}")
        return proc.stdout

    dry = run("--dry-run")
    out = run()
    return {"work": work, "dry": dry, "out": out, "jobs": slurm.jobs()}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, shared_data):
    work = lfw_mini_workdir(tmp_path_factory.mktemp("local") / "wf", shared_data)
    snakemake(work, "all", "--cores", "2", *CONFIG_ARGS)
    return work


@pytest.mark.slow
def test_every_job_of_the_dag_ran_in_a_slurm_job(slurm_run):
    out = slurm_run["out"]
    planned = [(rule, output) for _, rule, output in job_blocks(slurm_run["dry"])]
    to_run = sorted((rule, output) for rule, output in planned if output is not None)
    assert len(to_run) >= 10, planned

    # The submitting process runs itself only what computes nothing: `all` (the code stamps are
    # written as the workflow is read, by no job).
    local = [(rule, output) for is_local, rule, output in job_blocks(out) if is_local]
    assert all(output is None for rule, output in local), f"jobs run outside SLURM: {local}"

    # Every submission the executor reported is a job the controller ran to completion ...
    submitted = dict(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)", out))
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    ours = {job["id"]: job for job in slurm_run["jobs"] if job["name"] == run_id}
    assert submitted and set(submitted.values()) == set(ours), (submitted, slurm_run["jobs"])
    assert {job["state"] for job in ours.values()} == {"COMPLETED"}, ours

    # ... and inside those SLURM jobs (their logs are kept) every job of the DAG ran, once.
    logs = sorted((slurm_run["work"] / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert {log.stem for log in logs} == set(ours), logs
    inside = sorted((rule, output) for log in logs for is_local, rule, output in job_blocks(log.read_text())
                    if is_local)
    assert inside == to_run, (Counter(r for r, _ in inside), Counter(r for r, _ in to_run))
    print(f"{len(to_run)} jobs in {len(ours)} SLURM jobs: {dict(sorted(Counter(r for r, _ in to_run).items()))}")


@pytest.mark.slow
def test_slurm_tables_equal_the_local_run_byte_for_byte(slurm_run, local_run):
    local_tables = local_run / "results" / "tables"
    names = sorted(p.name for p in local_tables.glob("*.csv"))
    assert "benchmark2.csv" in names and "all_metrics.csv" in names, names
    slurm_tables = slurm_run["work"] / "results" / "tables"
    assert sorted(p.name for p in slurm_tables.glob("*.csv")) == names
    differing = [n for n in names if (slurm_tables / n).read_bytes() != (local_tables / n).read_bytes()]
    assert not differing, differing
