# code_stamp: the library code each script runs, hashed (results/code/<script>.sha256). Every rule
# takes its script's stamp as input (script_code), so a content edit of a module re-runs exactly
# the stages that run it. Written on the submitting machine, never submitted to a cluster: a shell
# job running Snakemake's own interpreter on the standard-library module (a `run:` block would make
# Snakemake start a whole new Snakemake, ~2 s of CPU, for each stamp).

import sys


localrules:
    code_stamp,


rule code_stamp:
    wildcard_constraints:
        script=r"[a-z][a-z0-9_]*",
    input:
        lambda wc: script_files(wc.script),
    output:
        PATHS["code_stamp"],
    log:
        "results/logs/code/{script}.log",
    shell:
        f'"{sys.executable}" -m maskbench.code_closure {{output:q}} {{input:q}} 2> {{log:q}}'
