# Mask-aware ensembles (`mask_aware:`): a mask classifier on a base model's embeddings (train
# identities; calibrated on val), two fusion weights chosen on val pairs, then the fused scores.


rule train_mask_classifier:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(MASK_AWARE_MODELS),
    input:
        embeddings=mask_classifier_embeddings,
        real=mask_classifier_real_embeddings,
        splits=mask_classifier_splits,
        code=script_code("train_mask_classifier"),
    output:
        PATHS["mask_classifier"],
    params:
        datasets=lambda wc: list(config["models"][wc.model]["mask_aware"]["datasets"]),
        embeddings=mask_classifier_embedding_groups,
        real=mask_classifier_real_groups,
        base=lambda wc: config["models"][wc.model]["mask_aware"]["base"],
        c=lambda wc: mask_aware_settings(config["models"][wc.model])["C"],
    log:
        "results/logs/train/{model}_mask_classifier.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/train_mask_classifier.py"


rule mask_aware_weights:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(MASK_AWARE_MODELS),
    input:
        scores=mask_aware_selection_scores,
        reference=ensemble_reference_scores,
        classifier=PATHS["mask_classifier"],
        probes=mask_aware_selection_probes,
        code=script_code("mask_aware_weights"),
    output:
        PATHS["fusion_weights"],
    params:
        settings=lambda wc: mask_aware_settings(config["models"][wc.model]),
        member_scores=mask_aware_selection_score_groups,
        probe_embeddings=mask_aware_selection_probe_groups,
    log:
        "results/logs/fuse/{dataset}/{model}/{protocol}/weights.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 60 * attempt,
    script:
        "../scripts/mask_aware_weights.py"


ruleorder: fuse_mask_aware > fuse


rule fuse_mask_aware:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(MASK_AWARE_MODELS),
    input:
        unpack(metrics_inputs),
        members=ensemble_member_scores,
        reference=ensemble_reference_scores,
        weights=PATHS["fusion_weights"],
        classifier=PATHS["mask_classifier"],
        probes=mask_aware_comparison_probes,
        code=script_code("fuse_mask_aware"),
    output:
        scores=PATHS["scores"],
        metrics=PATHS["metrics"],
    params:
        members=lambda wc: config["models"][wc.model]["members"],
        **METRICS_PARAMS,
    log:
        "results/logs/fuse/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/fuse_mask_aware.py"
