# score: pair scores of one comparison (ref variant vs probe variant) and, in the same job, its
# metrics: one job per comparison instead of two, for every model with its own embeddings.
# metrics: the metrics of imported scores (fuse jobs, like score jobs, write their own).


rule score:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(SCORED_MODELS),
    input:
        unpack(metrics_inputs),
        pairs=PATHS["pairs"],
        embeddings=comparison_embeddings,
        code=script_code("score"),
    output:
        scores=PATHS["scores"],
        metrics=PATHS["metrics"],
    params:
        score=lambda wc: model_score(wc.model),
        embeddings=comparison_embedding_groups,
        **METRICS_PARAMS,
    log:
        "results/logs/score/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/score.py"


rule metrics:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(IMPORTED_MODELS),  # scored and fused models write their metrics with their scores
    input:
        unpack(metrics_inputs),
        scores=PATHS["scores"],
        code=script_code("metrics"),
    output:
        PATHS["metrics"],
    params:
        **METRICS_PARAMS,
    log:
        "results/logs/metrics/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/metrics.py"
