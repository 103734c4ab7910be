# embed{model}: embeddings per (model, dataset, variant), one job reading the variant's chip
# shards: a changed mask type re-embeds its own variant only, and a large set plans a few jobs
# per model instead of one per shard.


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
        "results/logs/embed/{dataset}/{model}/{variant}.log",
    benchmark:
        "results/benchmarks/embed/{dataset}/{model}/{variant}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=lambda wc, attempt: 120 * attempt,
    script:
        "../scripts/embed.py"
