# Models trained for masks: on the train part of an identity split, selected on val; the test
# part is never read. Their outputs are model files that embed/project use like any other model.


rule train_head:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(PROJECTION_MODELS),
    input:
        embeddings=head_training_embeddings,
        splits=training_splits,
        code=script_code("train_head"),
    output:
        model=PATHS["model"],
        curve=PATHS["model_curve"],
        report=PATHS["model_report"],
    params:
        spec=training_spec,
        embeddings=head_training_groups,
        base=lambda wc: config["models"][wc.model]["base"],
        # val EERs are scored as the tables score the head and its base
        score=lambda wc: model_score(wc.model),
        base_score=lambda wc: model_score(config["models"][wc.model]["base"]),
        datasets=lambda wc: training_datasets(wc.model),
        seed=SEED,
        torch_threads=training_threads,
    log:
        "results/logs/train/{model}.log",
    benchmark:
        PATHS["training_benchmark"]
    threads: training_threads
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 120 * attempt,
        # torch runs the config's thread count: a cluster job gets that many CPUs even where a
        # profile caps threads (its `cores`)
        cpus_per_task=training_threads,
    script:
        "../scripts/train_head.py"


rule finetune:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(FINETUNE_MODELS),
    input:
        aligned=finetune_aligned_chips,
        masked=finetune_masked_chips,
        split=lambda wc: training_splits(wc)[0],
        code=script_code("finetune"),
    output:
        model=PATHS["model"],
        curve=PATHS["model_curve"],
        report=PATHS["model_report"],
    params:
        spec=training_spec,
        masked=finetune_masked_groups,
        seed=SEED,
        torch_threads=training_threads,
        cache_dir=PATHS["model_cache"],
    log:
        "results/logs/train/{model}.log",
    benchmark:
        PATHS["training_benchmark"]
    threads: training_threads
    resources:
        mem_mb=16000,
        runtime=lambda wc, attempt: 720 * attempt,
        cpus_per_task=training_threads,
    script:
        "../scripts/finetune.py"


rule training_figure:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(TRAINED_MODELS),
    input:
        curve=PATHS["model_curve"],
        report=PATHS["model_report"],
        code=script_code("training_figure"),
    output:
        report(
            PATHS["training_figure"],
            caption="../report/training.rst",
            category="Training",
            labels={"model": "{model}"},
        ),
    log:
        "results/logs/figures/training_{model}.log",
    threads: 1
    resources:
        mem_mb=1500,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/training_figure.py"


# project: a trained head applied to the base model's embeddings of one variant (no chip is read).
rule project:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(PROJECTION_MODELS),
    input:
        base=projection_base,
        head=PATHS["model"],
        code=script_code("project"),
    output:
        PATHS["embeddings"],
    log:
        "results/logs/project/{dataset}/{model}/{variant}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/project.py"


# fuse: an ensemble's scores from its members' scores of the same comparison, and their metrics.
rule fuse:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(ENSEMBLE_MODELS),
    input:
        unpack(metrics_inputs),
        members=ensemble_member_scores,
        reference=ensemble_reference_scores,
        code=script_code("fuse"),
    output:
        scores=PATHS["scores"],
        metrics=PATHS["metrics"],
    params:
        member_scores=ensemble_member_score_files,
        reference_scores=ensemble_reference_score_files,
        weights=lambda wc: config["models"][wc.model].get("member_weights"),
        **METRICS_PARAMS,
    log:
        "results/logs/fuse/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/fuse.py"
