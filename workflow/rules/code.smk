# code_stamp: the library code each script runs, hashed (results/code/<script>.sha256). Every rule
# takes its script's stamp as input (script_code), so a content edit of a module re-runs exactly
# the stages that run it. Written in the main process, never submitted to a cluster.


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
    run:
        code_stamp(list(input), output[0])
