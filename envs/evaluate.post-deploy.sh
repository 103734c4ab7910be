#!/usr/bin/env bash
# Installs maskbench itself into this environment (Snakemake runs this once, inside the new env).
# Snakemake copies the env file to .snakemake/conda/ before conda reads it, so a path relative to
# envs/ would not find the project: the workflow exports its checkout as MASKBENCH_ROOT
# (workflow/rules/common.smk). No dependencies: the env file lists every package the rules import.
set -euo pipefail
: "${MASKBENCH_ROOT:?is set by the workflow (workflow/rules/common.smk); run through snakemake}"
pip install --no-deps -e "$MASKBENCH_ROOT"
