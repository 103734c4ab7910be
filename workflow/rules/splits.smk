# split{strategy}: train/val/test manifests of a dataset's usable images. Trained models learn on
# `train` of the identity split, are selected on `val` and evaluated on protocols restricted to
# `test`; the attribute study uses every strategy.


rule split:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        strategy="|".join(STRATEGIES),
    input:
        index=PATHS["index"],
        aligned=aligned_shards,
        copies=split_copies_file,
        code=split_code,
    output:
        table=PATHS["split"],
        report=PATHS["split_report"],
    params:
        ratios=SPLIT_CFG["ratios"],
        stratify=SPLIT_CFG["stratify"],
        age_groups=AGE_GROUPS,
        seed=SEED,
    log:
        "results/logs/splits/{dataset}/{strategy}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/split.py"
