# align: detect once, 68 landmarks once, one aligned chip per image; a status for every image.


rule align:
    input:
        index="results/{dataset}/index.parquet",
        acquired="resources/raw/{dataset}/acquired.json",
        code=lib("align", "align_step", "images", "chips"),
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
    input:
        shards=aligned_shards,
        code=lib("summaries"),
    output:
        "results/{dataset}/aligned/summary.json",
    log:
        "results/logs/align/{dataset}/summary.log",
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/align_summary.py"
