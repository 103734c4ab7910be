# mask{mask}: one mask type painted onto every aligned chip from its landmarks. A mask type's
# spec is a param, so editing one entry of `masks:` re-runs that branch and nothing else.


rule mask:
    conda:
        "../../envs/faces.yaml"
    input:
        aligned="results/{dataset}/aligned/shard-{shard}.parquet",
        code=lib("masks", "mask_step", "chips", "seeds"),
    output:
        "results/{dataset}/masked/{mask}/shard-{shard}.parquet",
    params:
        spec=lambda wc: config["masks"][wc.mask],
        seed=SEED,
    log:
        "results/logs/mask/{dataset}/{mask}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/mask/{dataset}/{mask}/shard-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/mask.py"
