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
        model=MODEL_FILE,
        curve="results/models/{model}/curve.parquet",
        report="results/models/{model}/report.json",
    params:
        spec=training_spec,
        base=lambda wc: config["models"][wc.model]["base"],
        datasets=lambda wc: training_datasets(wc.model),
        seed=SEED,
        torch_threads=training_threads,
    log:
        "results/logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    threads: training_threads
    resources:
        mem_mb=4000,
        runtime=lambda wc, attempt: 120 * attempt,
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
        model=MODEL_FILE,
        curve="results/models/{model}/curve.parquet",
        report="results/models/{model}/report.json",
    params:
        spec=training_spec,
        seed=SEED,
        torch_threads=training_threads,
        cache_dir="results/cache/models",
    log:
        "results/logs/train/{model}.log",
    benchmark:
        "results/benchmarks/train/{model}.tsv"
    threads: training_threads
    resources:
        mem_mb=16000,
        runtime=lambda wc, attempt: 720 * attempt,
    script:
        "../scripts/finetune.py"


rule training_figure:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(TRAINED_MODELS),
    input:
        curve="results/models/{model}/curve.parquet",
        report="results/models/{model}/report.json",
        code=script_code("training_figure"),
    output:
        report(
            "results/figures/training_{model}.png",
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


# project: a trained head applied to the base model's embeddings of one shard (no chip is read).
rule project:
    conda:
        "../../envs/embed.yaml"
    wildcard_constraints:
        model=one_of(PROJECTION_MODELS),
    input:
        base=projection_base_shard,
        head=MODEL_FILE,
        code=script_code("project"),
    output:
        "results/{dataset}/embeddings/{model}/{variant}/shard-{shard}.parquet",
    log:
        "results/logs/project/{dataset}/{model}/{variant}/shard-{shard}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/project.py"


# fuse: an ensemble's scores from its members' scores of the same comparison.
rule fuse:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        model=one_of(ENSEMBLE_MODELS),
    input:
        members=ensemble_member_scores,
        reference=ensemble_reference_scores,
        code=script_code("fuse"),
    output:
        "results/{dataset}/scores/{model}/{protocol}/{comparison}.parquet",
    params:
        members=lambda wc: config["models"][wc.model]["members"],
        weights=lambda wc: config["models"][wc.model].get("member_weights"),
    log:
        "results/logs/fuse/{dataset}/{model}/{protocol}/{comparison}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 20 * attempt,
    script:
        "../scripts/fuse.py"
