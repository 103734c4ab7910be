# acquire: raw data lands in resources/raw/<dataset>/ (verified, safely extracted, never modified);
# the demo dataset is generated here instead. Files without a published checksum are pinned in
# resources/raw/<dataset>/checksums.lock.json (not an output: Snakemake would delete it before the
# job, and the lock must outlive re-runs). acquire is the only rule that writes under resources/raw.
# index: one Parquet table per dataset.


rule acquire:
    conda:
        "../../envs/data.yaml"
    input:
        code=acquire_code,
    output:
        PATHS["acquired"],
    params:
        # only what acquiring reads: editing a dataset's protocols or masks must not re-acquire it
        # (and so re-run everything after it)
        dataset=lambda wc: {k: v for k, v in dataset_cfg(wc).items() if k in ("layout", "files", "generate")},
        seed=SEED,
    log:
        "results/logs/acquire/{dataset}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 120 * attempt,
    script:
        "../scripts/acquire.py"


rule index:
    conda:
        "../../envs/data.yaml"
    input:
        acquired=PATHS["acquired"],
        code=script_code("index"),
    output:
        table=PATHS["index"],
        report=PATHS["index_report"],
    params:
        layout=lambda wc: config["datasets"][wc.dataset]["layout"],
        images=dataset_images,
        shards=lambda wc: config["datasets"][wc.dataset]["shards"],
        options=lambda wc: config["datasets"][wc.dataset].get("index_options", {}),
    log:
        "results/logs/index/{dataset}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/index.py"
