# pairs{protocol}: seeded verification pairs as a Parquet manifest, with their counts in JSON.


rule pairs:
    conda:
        "../../envs/data.yaml"
    input:
        aligned=aligned_shards,
        summary=PATHS["aligned_summary"],  # fails first, clearly, if no face was found
        acquired=PATHS["acquired"],
        index=PATHS["index"],  # groups (videos): no genuine pair within one
        copies=protocol_copies_file,  # copies of one picture: never a genuine pair
        split=protocol_split_file,
        code=script_code("pairs"),
    output:
        table=PATHS["pairs"],
        report=PATHS["pairs_report"],
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
