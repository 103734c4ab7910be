"""A throw-away single-node SLURM cluster for tests, started and stopped by the test itself.

Everything lives in one temporary folder: a ``slurm.conf`` naming this host (``hostname -s``) as
the only node with the CPUs and memory ``slurmd -C`` detects, a fresh munge key, the daemons'
state, spool, pid and log files. ``munged``, ``slurmctld`` and ``slurmd`` run in the foreground
as children of the test (so their PIDs are known), the clients find the cluster through the
``SLURM_CONF`` variable of :attr:`SlurmCluster.env`, and on exit every job still known to the
cluster is cancelled and the daemons are stopped by PID: SIGTERM, then SIGKILL after a timeout.

The configuration is the smallest that works in a container: no cgroups
(``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``), no accounting (so status is
read with ``squeue``; ``MinJobAge`` keeps finished jobs listed for 2 hours, longer than a run), daemons as root.

    with slurm_cluster() as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.env)

or, in a test module, ``from slurm_cluster import slurm`` and take the ``slurm`` fixture, which
skips (with the reason printed) where the binaries are missing or the test does not run as root.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "srun", "munge", "unmunge")
# Debian puts the daemons in /usr/sbin, which a non-login PATH may lack.
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
INSTALL_HINT = "install them with .ci/install-slurm.sh (Debian packages slurm-wlm and munge)"
# States of jobs that are over; anything else is cancelled on exit.
FINISHED_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT"}


def _search_path() -> str:
    parts = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(parts + [d for d in SBIN_DIRS if d not in parts])


def find_binaries() -> tuple[dict[str, str], list[str]]:
    """(name -> absolute path of each daemon and client found, names missing)."""
    path = _search_path()
    found, missing = {}, []
    for name in DAEMONS + CLIENTS:
        exe = shutil.which(name, path=path)
        if exe:
            found[name] = exe
        else:
            missing.append(name)
    return found, missing


def unavailable_reason() -> str | None:
    """Why a SLURM cluster cannot be started here, or None."""
    if not sys.platform.startswith("linux"):
        return f"a local SLURM cluster needs Linux, not {sys.platform}"
    _, missing = find_binaries()
    if missing:
        return f"SLURM/munge binaries not found ({', '.join(missing)}): {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "a local SLURM cluster runs its daemons with SlurmUser=root: run the test as root"
    return None


def short_hostname() -> str:
    """What ``hostname -s`` prints: the name slurmd looks itself up by."""
    return socket.gethostname().split(".", 1)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_hardware(slurmd: str) -> dict[str, int]:
    """CPUs, topology and RealMemory as slurmd itself detects them (``slurmd -C``), so the node
    is never drained for claiming more than it has; os.cpu_count and /proc/meminfo otherwise."""
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    try:
        out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, timeout=30).stdout
        values = dict(re.findall(r"(\w+)=(\d+)", out))
        if all(k in values for k in keys):
            return {k: int(values[k]) for k in keys}
    except (OSError, subprocess.SubprocessError):
        pass
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"CPUs": os.cpu_count() or 1, "RealMemory": mem_kb // 1024}


def slurm_conf_text(root: Path, node: str, hardware: dict[str, int], ctld_port: int,
                    slurmd_port: int, munge_socket: Path, partition: str = "debug") -> str:
    node_spec = " ".join(f"{k}={v}" for k, v in hardware.items())
    return f"""\
# Single-node test cluster written by tests/slurm_cluster.py: this host is the only node.
ClusterName=maskbenchtest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
# no cgroups (containers), no accounting daemon
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
# finished jobs stay visible to `squeue --states=all` (the status source without accounting)
MinJobAge=7200
# short timeouts: a test cluster on one machine
SlurmctldTimeout=30
SlurmdTimeout=30
MessageTimeout=10
InactiveLimit=0
KillWait=5
Waittime=0
NodeName={node} NodeAddr=127.0.0.1 {node_spec} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    partition: str
    hardware: dict[str, int]
    binaries: dict[str, str]
    env: dict[str, str]
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def cpus(self) -> int:
        return self.hardware["CPUs"]

    @property
    def real_memory(self) -> int:
        return self.hardware["RealMemory"]

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """A client command (sinfo, squeue, ...) against this cluster."""
        exe = self.binaries.get(cmd[0], cmd[0])
        return subprocess.run([exe, *cmd[1:]], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows, finished ones included (MinJobAge)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k").stdout
        rows = [line.split("|", 3) for line in out.splitlines() if line.strip()]
        return [{"id": r[0], "name": r[1], "state": r[2], "comment": r[3]} for r in rows]

    def node_state(self) -> str:
        proc = self.run("sinfo", "--noheader", "--Node", "--nodes", self.node, "--format=%t",
                        check=False, timeout=15)
        return proc.stdout.strip().rstrip("*~#!%$@^-") if proc.returncode == 0 else ""

    def diagnostics(self, lines: int = 40) -> str:
        """Tails of the daemons' logs, for failure messages."""
        parts = []
        for name, path in self.logs.items():
            out = path.with_suffix(".out")
            parts.append(f"--- {name} ({path}) ---\n{_tail(path, lines)}\n{_tail(out, 10)}")
        try:
            parts.append("--- scontrol show node ---\n" + self.run("scontrol", "show", "node", check=False).stdout)
        except (OSError, subprocess.SubprocessError):
            pass
        return "\n".join(parts)

    def _start(self, name: str, args: list[str]) -> None:
        # the daemons log to their log files; their own output (start-up errors) goes beside
        with open(self.root / "log" / f"{name}.out", "w") as log:
            self.processes[name] = subprocess.Popen(
                [self.binaries[name], *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, cwd=self.root, start_new_session=True)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while starting the "
                                   f"SLURM test cluster\n{self.diagnostics()}")

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"SLURM test cluster: timed out after {timeout:.0f} s waiting "
                                   f"for {what}\n{self.diagnostics()}")
            time.sleep(0.25)

    def start(self, timeout: float = 60) -> None:
        munge_socket = self.root / "munge" / "munge.socket"
        self._start("munged", [
            "--foreground", "--force", f"--key-file={self.root / 'munge' / 'munge.key'}",
            f"--socket={munge_socket}", f"--pid-file={self.root / 'run' / 'munged.pid'}",
            f"--log-file={self.logs['munged']}", f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        ])
        self._wait("munged's socket", munge_socket.exists, timeout)
        # a credential must round-trip before the SLURM daemons rely on it
        cred = subprocess.run([self.binaries["munge"], "-n", "-S", str(munge_socket)],
                              capture_output=True, text=True, timeout=15)
        check = subprocess.run([self.binaries["unmunge"], "-S", str(munge_socket)], input=cred.stdout,
                               capture_output=True, text=True, timeout=15)
        if cred.returncode or check.returncode:
            raise RuntimeError(f"munge credential check failed: {cred.stderr}{check.stderr}\n"
                               f"{self.diagnostics()}")
        self._start("slurmctld", ["-D", "-c", "-f", str(self.conf)])
        self._wait("slurmctld to answer", lambda: self.run("scontrol", "ping", check=False,
                                                           timeout=15).returncode == 0, timeout)
        self._start("slurmd", ["-D", "-f", str(self.conf), "-N", self.node])
        self._wait(f"node {self.node} to be idle", lambda: self.node_state() == "idle", timeout)

    def cancel_all_jobs(self, timeout: float = 30) -> None:
        """Cancel whatever is still queued or running, and wait until it is gone."""
        if self.processes.get("slurmctld") is None or self.processes["slurmctld"].poll() is not None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                active = [j["id"] for j in self.jobs() if j["state"] not in FINISHED_STATES]
            except (OSError, subprocess.SubprocessError):
                return
            if not active:
                return
            self.run("scancel", *active, check=False)
            time.sleep(1)

    def stop(self, timeout: float = 20) -> None:
        """Stop the daemons by PID, last started first: SIGTERM, then SIGKILL after `timeout`."""
        for name in reversed(list(self.processes)):
            proc = self.processes[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)


def write_client_wrappers(bin_dir: Path, conf: Path, binaries: dict[str, str]) -> None:
    """Client commands that always talk to this cluster. snakemake's slurm-jobstep executor
    removes every SLURM_* variable but the job's identity (SLURM_CONF included) before it calls
    `srun` inside a job, and without SLURM_CONF srun looks for /etc/slurm/slurm.conf, which a
    real cluster has and this one must not touch."""
    bin_dir.mkdir(mode=0o755, exist_ok=True)
    for name in CLIENTS:
        if name in ("munge", "unmunge"):
            continue
        wrapper = bin_dir / name
        wrapper.write_text(f"#!/bin/sh\nSLURM_CONF={shlex.quote(str(conf))} exec "
                           f"{shlex.quote(binaries[name])} \"$@\"\n")
        wrapper.chmod(0o755)


def _cluster_env(conf: Path, bin_dir: Path) -> dict[str, str]:
    # No SLURM settings from an outer allocation (the test may itself run in a SLURM job).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_"))}
    env["SLURM_CONF"] = str(conf)
    # Jobs inherit this environment (sbatch --export=ALL): the cluster's client wrappers, then
    # this interpreter's bin folder, so `snakemake` and `python` inside a job are the ones
    # running the tests.
    first = [str(bin_dir), str(Path(sys.executable).parent)]
    rest = [p for p in _search_path().split(os.pathsep) if p and p not in first]
    env["PATH"] = os.pathsep.join(first + rest)
    return env


@contextmanager
def slurm_cluster(base: Path | None = None, *, start_timeout: float = 60, stop_timeout: float = 20,
                  keep: bool = False) -> Iterator[SlurmCluster]:
    """Start a single-node SLURM cluster in a fresh folder under `base` (default: /tmp, kept
    short because munge and slurmd put Unix sockets in it); stop it and remove the folder on exit
    (the folder is kept if `keep`)."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    binaries, _ = find_binaries()
    root = Path(tempfile.mkdtemp(prefix="slurm-", dir=base))
    for sub in ("state", "spool", "run", "log"):
        (root / sub).mkdir(mode=0o700)
    (root / "munge").mkdir(mode=0o755)  # clients must reach the socket; the key stays 0400
    key = root / "munge" / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = root / "slurm.conf"
    node = short_hostname()
    hardware = node_hardware(binaries["slurmd"])
    conf.write_text(slurm_conf_text(root, node, hardware, free_port(), free_port(),
                                    root / "munge" / "munge.socket"))
    write_client_wrappers(root / "bin", conf, binaries)
    cluster = SlurmCluster(
        root=root, conf=conf, node=node, partition="debug", hardware=hardware, binaries=binaries,
        env=_cluster_env(conf, root / "bin"),
        logs={name: root / "log" / f"{name}.log" for name in DAEMONS},
    )
    with ExitStack() as stack:
        if not keep:
            stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(cluster.stop, stop_timeout)
        stack.callback(cluster.cancel_all_jobs)
        cluster.start(start_timeout)
        yield cluster


@pytest.fixture(scope="module")
def slurm() -> Iterator[SlurmCluster]:
    """A running single-node SLURM cluster for the module's tests; skipped where impossible."""
    reason = unavailable_reason()
    if reason:
        print(f"skipping SLURM tests: {reason}")
        pytest.skip(reason)
    with slurm_cluster() as cluster:
        yield cluster
