# score: pair scores of one comparison (ref variant vs probe variant), then its metrics.


rule score:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(SCORED_MODELS),
    input:
        pairs=PATHS["pairs"],
        embeddings=comparison_embeddings,
        code=script_code("score"),
    output:
        PATHS["scores"],
    params:
        score=lambda wc: config["models"][wc.model].get("score", "neg_l2"),
    log:
        "results/logs/score/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/score.py"


rule metrics:
    conda:
        "../../envs/evaluate.yaml"
    input:
        scores=PATHS["scores"],
        baseline=nist_baseline,
        val_scores=validation_scores,
        # metrics per demographic group need the dataset's index (only where group_by is set)
        index=group_index,
        code=script_code("metrics"),
    output:
        PATHS["metrics"],
    params:
        evaluation=config.get("evaluation", {}),
        group_by=lambda wc: dataset_cfg(wc).get("group_by", []),
        # only where age groups are grouped by, so other metrics do not re-run when the bins change
        age_groups=lambda wc: AGE_GROUPS if "age_group" in dataset_cfg(wc).get("group_by", []) else [],
    log:
        "results/logs/metrics/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/metrics.py"
