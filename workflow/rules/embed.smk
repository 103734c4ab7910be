# embed{model}: embeddings per (model, dataset, variant, shard); an unchanged shard is never
# embedded twice by the same model.


rule embed:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(CHIP_MODELS),
    input:
        chips=variant_chips,
        model_file=embed_model_files,
        code=script_code("embed"),
    output:
        PATHS["embeddings"],
    params:
        model=embed_model_spec,
        cache_dir=PATHS["model_cache"],
    log:
        "results/logs/embed/{dataset}/{model}/{variant}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/embed/{dataset}/{model}/{variant}/shard-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wc, attempt: 120 * attempt,
    script:
        "../scripts/embed.py"
