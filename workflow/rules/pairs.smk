# pairs{protocol}: seeded verification pairs as a Parquet manifest, with their counts in JSON.


rule pairs:
    conda:
        "../../envs/data.yaml"
    input:
        aligned=aligned_shards,
        summary="results/{dataset}/aligned/summary.json",  # fails first, clearly, if no face was found
        acquired="resources/raw/{dataset}/acquired.json",
        index="results/{dataset}/index.parquet",  # groups (videos): no genuine pair within one
        split=protocol_split_file,
        code=script_code("pairs"),
    output:
        table="results/{dataset}/pairs/{protocol}.parquet",
        report="results/{dataset}/pairs/{protocol}.json",
    params:
        protocol=lambda wc: config["protocols"][wc.protocol],
        comparisons=lambda wc: comparison_pairs(config, wc.dataset, wc.protocol),
        seed=SEED,
    log:
        "results/logs/pairs/{dataset}/{protocol}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/pairs.py"
