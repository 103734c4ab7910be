# Scores exchanged with other tools: import an imported model's score files (Bob's 4/5 columns or
# CSV) as scores Parquet files; export any scores Parquet file in Bob's 4- or 5-column format.


# an imported model's scores come from its files, never from embeddings
ruleorder: import_scores > score


rule import_scores:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(IMPORTED_MODELS),  # no imported model: match nothing
    input:
        scores=imported_score_file,
        pairs=imported_pairs,
        code=script_code("import_scores"),
    output:
        PATHS["scores"],
    params:
        format=lambda wc: config["models"][wc.model]["format"],
    log:
        "results/logs/import_scores/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/import_scores.py"


rule export_scores:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        bob="bob4|bob5",
    input:
        scores=PATHS["scores"],
        aligned=aligned_shards,
        code=script_code("export_scores"),
    output:
        PATHS["scores_bob"],
    params:
        columns=lambda wc: int(wc.bob[-1]),
    log:
        "results/logs/export_scores/{dataset}/{model}/{protocol}/{comparison}.{bob}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/export_scores.py"
