# align: detect once, 68 landmarks once, one aligned chip per image; a status for every image.


rule align:
    conda:
        "../../envs/faces.yaml"
    input:
        index="results/{dataset}/index.parquet",
        acquired="resources/raw/{dataset}/acquired.json",
        code=script_code("align"),
        faces=lambda wc: config["datasets"][wc.dataset].get("faces") or [],
    output:
        "results/{dataset}/aligned/shard-{shard}.parquet",
    params:
        align=config["align"],
        images=lambda wc: config["datasets"][wc.dataset].get("images", "images"),
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
        "../../envs/data.yaml"
    input:
        shards=aligned_shards,
        code=script_code("align_summary"),
    output:
        "results/{dataset}/aligned/summary.json",
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


rule mask_summary:
    conda:
        "../../envs/data.yaml"
    input:
        shards=lambda wc: expand(
            "results/{dataset}/masked/{mask}/shard-{shard}.parquet",
            dataset=wc.dataset,
            mask=wc.mask,
            shard=shards(wc.dataset),
        ),
        code=script_code("status_summary"),
    output:
        "results/{dataset}/masked/{mask}/summary.json",
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
        aligned=expand("results/{dataset}/aligned/summary.json", dataset=config["datasets"]),
        masked=[
            f"results/{d}/masked/{m}/summary.json"
            for d in config["datasets"]
            for m in masks_for(config, d)
        ],
        code=script_code("coverage"),
    output:
        csv=report(
            "results/tables/coverage.csv",
            caption="../report/coverage.rst",
            category="Tables",
            labels={"table": "coverage"},
        ),
        md="results/tables/coverage.md",
    params:
        datasets={d: masks_for(config, d) for d in config["datasets"]},
    log:
        "results/logs/tables/coverage.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/coverage.py"
