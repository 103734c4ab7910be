# align: detect once, 68 landmarks once, one aligned chip per image; a status for every image.


rule align:
    conda:
        "../../envs/faces.yaml"
    input:
        index=PATHS["index"],
        acquired=PATHS["acquired"],
        code=script_code("align"),
        faces=lambda wc: config["datasets"][wc.dataset].get("faces") or [],
    output:
        PATHS["aligned"],
    params:
        align=config["align"],
        images=dataset_images,
        fallback_box=lambda wc: config["datasets"][wc.dataset].get("fallback_box"),
    log:
        "results/logs/align/{dataset}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/align/{dataset}/shard-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 60 * attempt,
    script:
        "../scripts/align.py"


rule align_summary:
    conda:
        "../../envs/faces.yaml"
    input:
        shards=aligned_shards,
        code=script_code("align_summary"),
    output:
        PATHS["aligned_summary"],
    log:
        "results/logs/align/{dataset}/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    params:
        usable=["ok", "fallback", "provided"],
    script:
        "../scripts/align_summary.py"


# copies{dataset}: images that are one picture filed under two names (identical chips), found once
rule copies:
    conda:
        "../../envs/data.yaml"
    input:
        shards=aligned_shards,
        code=script_code("copies"),
    output:
        PATHS["copies"],
    log:
        "results/logs/align/{dataset}/copies.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/copies.py"


rule mask_summary:
    conda:
        "../../envs/data.yaml"
    input:
        shards=masked_summary_shards,
        code=script_code("status_summary"),
    output:
        PATHS["masked_summary"],
    params:
        usable=["masked"],
    log:
        "results/logs/mask/{dataset}/{mask}/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/status_summary.py"


rule coverage:
    conda:
        "../../envs/data.yaml"
    input:
        aligned=[s["aligned"] for s in coverage_summaries().values()],
        masked=[p for s in coverage_summaries().values() for p in s["masked"].values()],
        code=script_code("coverage"),
    output:
        csv=report(
            path("table", table="coverage"),
            caption="../report/coverage.rst",
            category="Tables",
            labels={"table": "coverage"},
        ),
        md=path("table_md", table="coverage"),
    params:
        summaries=coverage_summaries(),
    log:
        "results/logs/tables/coverage.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/coverage.py"
