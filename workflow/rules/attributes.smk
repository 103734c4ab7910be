# Attribute prediction on masked faces (AJCAI 2021): heads on embeddings and a fine-tuned CNN, tables.
# Built only when the config has an `attributes:` section, so other configs keep their DAG.

if "attributes" in config:
    from maskbench.attributes.settings import attribute_settings, check_attributes_config, heads_settings, train_variants

    validate({"attributes": config["attributes"]}, schema="../schemas/attributes.schema.yaml")
    check_attributes_config(config)
    ATTR = attribute_settings(config)

    HEADS_CMP = heads_settings(ATTR)
    ATTRIBUTE_FIGURES = ("confusion", "coverage", "age_error")
    RUN_METRICS = PATHS["attribute_metrics"]
    RUN_PREDICTIONS = PATHS["attribute_predictions"]
    RUN_FIGURE = PATHS["attribute_figure"]
    RUN_MODEL = PATHS["attribute_model"]
    # seconds per epoch and per 1,000 chips: kept apart from metrics.json, whose bytes a config fixes
    RUN_TIMING = PATHS["attribute_timing"]
    # the fine-tuned CNN, filed as one more model (cnn_<arch>) beside the embedding models
    CNN = ATTR["cnn"]
    CNN_TRAIN_VARIANTS = CNN["train_variants"] if CNN else []
    # one (dataset, model, split strategy, train variant) per trained set of heads or CNN
    ATTRIBUTE_RUNS = [
        {"dataset": d, "model": m, "strategy": s, "train": t}
        for d in ATTR["datasets"]
        for m in ATTR["models"]
        for s in ATTR["splits"]
        for t in ATTR["train_variants"]
    ] + [
        {"dataset": d, "model": CNN["model"], "strategy": s, "train": t}
        for d in (ATTR["datasets"] if CNN else [])
        for s in CNN["splits"]
        for t in CNN_TRAIN_VARIANTS
    ]
    # (model, strategy, train) of every run: the same for every dataset
    RUN_KEYS = list(dict.fromkeys((r["model"], r["strategy"], r["train"]) for r in ATTRIBUTE_RUNS))

    rule attributes:
        conda:
            "../../envs/embed.yaml"
        wildcard_constraints:
            dataset="|".join(ATTR["datasets"]),
            model="|".join(ATTR["models"]),
            strategy="|".join(ATTR["splits"]),
            train="|".join(ATTR["train_variants"]),
        input:
            split=PATHS["split"],
            index=PATHS["index"],
            embeddings=all_variant_embeddings,
            code=script_code("attributes"),
        output:
            predictions=RUN_PREDICTIONS,
            metrics=RUN_METRICS,
        params:
            embeddings=variant_embeddings,
            train_on=lambda wc: train_variants(config, wc.dataset, wc.train),
            test_on=lambda wc: variants_for(config, wc.dataset),
            tasks=ATTR["tasks"],
            heads=ATTR["heads"],
            age_groups=ATTR["age_groups"],
            thresholds=ATTR["thresholds"],
            seed=SEED,
        log:
            "results/logs/attributes/{dataset}/{model}/{strategy}/{train}.log",
        threads: 1
        resources:
            mem_mb=4000,
            runtime=lambda wc, attempt: 60 * attempt,
        script:
            "../scripts/attributes.py"

    # the CNN: fine-tuned on the train split's chips, each task's epoch chosen on val, tested on
    # every variant; predictions and metrics as the heads write them (head kind `cnn`)
    if CNN:

        rule attributes_cnn:
            conda:
                "../../envs/embed.yaml"
            wildcard_constraints:
                dataset="|".join(ATTR["datasets"]),
                model=CNN["model"],
                strategy="|".join(CNN["splits"]),
                train="|".join(CNN_TRAIN_VARIANTS),
            input:
                split=PATHS["split"],
                index=PATHS["index"],
                aligned=aligned_shards,
                masked=all_masked_shards,
                code=script_code("attributes_cnn"),
            output:
                predictions=RUN_PREDICTIONS,
                metrics=RUN_METRICS,
                model=RUN_MODEL,
                timing=RUN_TIMING,
            params:
                masked=masked_shard_groups,
                train_on=lambda wc: train_variants(config, wc.dataset, wc.train),
                test_on=lambda wc: variants_for(config, wc.dataset),
                tasks=ATTR["tasks"],
                age_groups=ATTR["age_groups"],
                thresholds=ATTR["thresholds"],
                spec=CNN["spec"],
                seed=SEED,
                cache_dir=PATHS["model_cache"],
                torch_threads=CNN["threads"],
            log:
                "results/logs/attributes/{dataset}/{model}/{strategy}/{train}.log",
            benchmark:
                "results/benchmarks/attributes/{dataset}/{model}/{strategy}/{train}.tsv"
            threads: CNN["threads"]
            resources:
                mem_mb=16000,
                runtime=lambda wc, attempt: 720 * attempt,
                cpus_per_task=CNN["threads"],  # torch runs this many threads (see train.smk)
            script:
                "../scripts/attributes_cnn.py"

    # one job draws the figures of every run (heads and CNN) of a dataset
    rule attributes_figures:
        conda:
            "../../envs/embed.yaml"
        wildcard_constraints:
            dataset="|".join(ATTR["datasets"]),
        input:
            metrics=dataset_attribute_metrics,
            code=script_code("attributes_figures"),
        output:
            [
                RUN_FIGURE.format(dataset="{dataset}", model=m, strategy=s, train=t, kind=kind)
                for m, s, t in RUN_KEYS
                for kind in ATTRIBUTE_FIGURES
            ],
        params:
            runs=dataset_attribute_figures,
        log:
            "results/logs/figures/attributes/{dataset}.log",
        threads: 1
        resources:
            mem_mb=1500,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/attributes_figures.py"

    # results/tables/attributes.csv also fits report.smk's `table` pattern
    ruleorder: attributes_table > table
    ruleorder: attributes_privacy > table

    rule attributes_table:
        conda:
            "../../envs/embed.yaml"
        input:
            metrics=[RUN_METRICS.format(**r) for r in ATTRIBUTE_RUNS],
            # the tables are delivered with the figures of every run
            figures=[RUN_FIGURE.format(kind=kind, **r) for r in ATTRIBUTE_RUNS for kind in ATTRIBUTE_FIGURES],
            code=script_code("attributes_table"),
        output:
            csv=ATTRIBUTE_TABLES[0],
            md=path("table_md", table="attributes"),
            by_group=ATTRIBUTE_TABLES[1],
            by_group_md=path("table_md", table="attributes_by_group"),
        params:
            entries=[
                {"dataset": r["dataset"], "model": r["model"], "split": r["strategy"],
                 "train_variant": r["train"], "path": RUN_METRICS.format(**r)}
                for r in ATTRIBUTE_RUNS
            ],
            splits=ATTR["splits"],
        log:
            "results/logs/tables/attributes.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=lambda wc, attempt: 10 * attempt,
        script:
            "../scripts/attributes_table.py"

    # what a mask hides: accuracy lost (MAE added) per task, mask type and demographic group, for
    # an attacker trained on bare faces and one trained on masked faces, paired bootstrap intervals
    rule attributes_privacy:
        conda:
            "../../envs/evaluate.yaml"
        input:
            predictions=[RUN_PREDICTIONS.format(**r) for r in ATTRIBUTE_RUNS],
            code=script_code("attributes_privacy"),
        output:
            csv=ATTRIBUTE_TABLES[2],
            md=path("table_md", table="attributes_privacy"),
            figure=path("figure_any", name="attributes_privacy"),
        params:
            entries=[
                {"dataset": r["dataset"], "model": r["model"], "split": r["strategy"],
                 "train_variant": r["train"], "path": RUN_PREDICTIONS.format(**r)}
                for r in ATTRIBUTE_RUNS
            ],
            masks={d: masks_for(config, d) for d in ATTR["datasets"]},
            tasks=ATTR["tasks"],
            age_groups=ATTR["age_groups"],
            bootstrap=ATTR["bootstrap"],
            seed=SEED,
        log:
            "results/logs/tables/attributes_privacy.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/attributes_privacy.py"

    # heads compared: linear, MLP, ordinal (age, age group) on the whole chip's embedding and on
    # dlib's embedding of the upper face, per train -> test variant, in one table
    UPPER_EMBEDDINGS = "results/{dataset}/attributes/upper_face/{strategy}/{variant}.parquet"
    HEADS_RUN = "results/{dataset}/attributes/heads/{model}/{strategy}.json"

    rule attributes_upper_embeddings:
        conda:
            "../../envs/embed.yaml"
        wildcard_constraints:
            dataset="|".join(ATTR["datasets"]),
            strategy="|".join(HEADS_CMP["splits"]),
        input:
            split="results/{dataset}/splits/{strategy}.parquet",
            aligned=aligned_shards,
            masked=lambda wc: [] if wc.variant == "unmasked" else
                masked_shards(wc.dataset, wc.variant),
            code=script_code("attributes_upper_embeddings"),
        output:
            UPPER_EMBEDDINGS,
        params:
            cache_dir="results/cache/models",
        log:
            "results/logs/attributes/{dataset}/upper_face/{strategy}/{variant}.log",
        threads: 2
        resources:
            mem_mb=3000,
            runtime=lambda wc, attempt: 60 * attempt,
        script:
            "../scripts/attributes_upper_embeddings.py"

    rule attributes_heads:
        conda:
            "../../envs/evaluate.yaml"
        wildcard_constraints:
            dataset="|".join(ATTR["datasets"]),
            model="|".join(ATTR["models"]),
            strategy="|".join(HEADS_CMP["splits"]),
        input:
            split="results/{dataset}/splits/{strategy}.parquet",
            index="results/{dataset}/index.parquet",
            embeddings=lambda wc: [p for paths in variant_embeddings(wc).values() for p in paths],
            upper=lambda wc: [UPPER_EMBEDDINGS.format(variant=v, **wc) for v in variants_for(config, wc.dataset)],
            code=script_code("attributes_heads"),
        output:
            HEADS_RUN,
        params:
            features=lambda wc: {
                "full": variant_embeddings(wc),
                "upper": {v: [UPPER_EMBEDDINGS.format(variant=v, **wc)] for v in variants_for(config, wc.dataset)},
            },
            train_variants=lambda wc: {t: train_variants(config, wc.dataset, t) for t in ATTR["train_variants"]},
            masks=lambda wc: masks_for(config, wc.dataset),
            tasks=ATTR["tasks"],
            heads=HEADS_CMP["heads"],
            age_groups=ATTR["age_groups"],
            seed=SEED,
        log:
            "results/logs/attributes/{dataset}/heads/{model}/{strategy}.log",
        threads: 1
        resources:
            mem_mb=3000,
            runtime=lambda wc, attempt: 60 * attempt,
        script:
            "../scripts/attributes_heads.py"

    ruleorder: attributes_heads_table > table

    rule attributes_heads_table:
        conda:
            "../../envs/evaluate.yaml"
        input:
            runs=[HEADS_RUN.format(dataset=d, model=m, strategy=s)
                  for d in ATTR["datasets"] for m in ATTR["models"] for s in HEADS_CMP["splits"]],
            code=script_code("attributes_heads_table"),
        output:
            csv=ATTRIBUTE_TABLES[3],
            md="results/tables/attributes_heads.md",
        log:
            "results/logs/tables/attributes_heads.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=lambda wc, attempt: 10 * attempt,
        script:
            "../scripts/attributes_heads_table.py"

    # abstention: accuracy against coverage at each confidence threshold, for every run (heads
    # and CNN) in one table, and the masked test faces' curves side by side in one figure
    ruleorder: attributes_abstention > table

    rule attributes_abstention:
        conda:
            "../../envs/evaluate.yaml"
        input:
            metrics=[RUN_METRICS.format(**r) for r in ATTRIBUTE_RUNS],
            code=script_code("attributes_abstention"),
        output:
            csv=ATTRIBUTE_TABLES[4],
            md="results/tables/attributes_abstention.md",
            figure="results/figures/attributes_abstention.png",
        params:
            entries=[
                {"dataset": r["dataset"], "model": r["model"], "split": r["strategy"],
                 "train_variant": r["train"], "path": RUN_METRICS.format(**r)}
                for r in ATTRIBUTE_RUNS
            ],
        log:
            "results/logs/tables/attributes_abstention.log",
        threads: 1
        resources:
            mem_mb=1000,
            runtime=lambda wc, attempt: 10 * attempt,
        script:
            "../scripts/attributes_abstention.py"
