#!/usr/bin/env bash
# CI: install a single-node SLURM (slurm-wlm: slurmctld, slurmd, sbatch, squeue, ...) and munge
# from Debian's packages, for tests/test_slurm.py. Idempotent: does nothing when already there.
# The packages' own services are not used (the test starts its daemons itself), so none is started.
set -euo pipefail

missing=()
for cmd in slurmctld slurmd sbatch squeue scancel sinfo srun munged mungekey; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-slurm: slurm-wlm and munge already installed"
    exit 0
fi
echo "install-slurm: missing ${missing[*]}; installing slurm-wlm and munge"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d 101: the packages' postinst scripts must not start munge/slurm services (no init
# system in CI containers, and the test runs its own daemons with its own config).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && $SUDO rm -f "$policy"' EXIT

$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    slurm-wlm munge >/dev/null
echo "install-slurm: $(slurmctld -V 2>/dev/null || true), $(munged --version 2>/dev/null | head -n1 || true)"
