# Attribute prediction on masked faces (AJCAI 2021): splits, heads on embeddings, tables.
# Built only when the config has an `attributes:` section, so other configs keep their DAG.

ATTRIBUTE_TABLES = ["results/tables/attributes.csv", "results/tables/attributes_by_group.csv"]
ATTRIBUTE_FIGURES = ("confusion", "coverage", "age_error")


def attribute_targets():
    """The attribute tables (they bring their figures), or nothing without `attributes:`."""
    return list(ATTRIBUTE_TABLES) if "attributes" in config else []


if "attributes" in config:
    from maskbench.attributes_step import (
        attribute_settings,
        check_attributes_config,
        split_settings,
        train_variants,
    )
    from maskbench.splits import STRATEGIES

    validate(
        {k: config[k] for k in ("splits", "attributes") if k in config},
        schema="../schemas/attributes.schema.yaml",
    )
    check_attributes_config(config)
    ATTR = attribute_settings(config)
    SPLIT_CFG = split_settings(config)

    def _alternatives(values):
        return "|".join(sorted(values, key=len, reverse=True))

    def attribute_runs():
        """One (dataset, model, split strategy, train variant) per trained set of heads."""
        return [
            {"dataset": d, "model": m, "strategy": s, "train": t}
            for d in ATTR["datasets"]
            for m in ATTR["models"]
            for s in ATTR["splits"]
            for t in ATTR["train_variants"]
        ]

    def run_dir(run):
        return "results/{dataset}/attributes/{model}/{strategy}/{train}".format(**run)

    def figure_dir(run):
        return "results/figures/attributes/{dataset}/{model}/{strategy}/{train}".format(**run)

    def variant_embeddings(wildcards):
        """variant -> embedding shards of the dataset for the model (every variant is tested)."""
        return {
            v: expand(
                "results/{dataset}/embeddings/{model}/{variant}/shard-{shard}.parquet",
                dataset=wildcards.dataset,
                model=wildcards.model,
                variant=v,
                shard=shards(wildcards.dataset),
            )
            for v in variants_for(config, wildcards.dataset)
        }

    rule split:
        wildcard_constraints:
            dataset=_alternatives(ATTR["datasets"]),
            strategy=_alternatives(STRATEGIES),
        input:
            index="results/{dataset}/index.parquet",
            aligned=aligned_shards,
            code=lib("splits", "attributes_step", "attributes", "seeds"),
        output:
            table="results/{dataset}/splits/{strategy}.parquet",
            report="results/{dataset}/splits/{strategy}.json",
        params:
            ratios=SPLIT_CFG["ratios"],
            stratify=SPLIT_CFG["stratify"],
            age_groups=ATTR["age_groups"],
            seed=SEED,
        log:
            "results/logs/splits/{dataset}/{strategy}.log",
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 10 * attempt,
        script:
            "../scripts/split.py"

    rule attributes:
        wildcard_constraints:
            dataset=_alternatives(ATTR["datasets"]),
            model=_alternatives(ATTR["models"]),
            strategy=_alternatives(ATTR["splits"]),
            train=_alternatives(ATTR["train_variants"]),
        input:
            split="results/{dataset}/splits/{strategy}.parquet",
            index="results/{dataset}/index.parquet",
            embeddings=lambda wc: [p for paths in variant_embeddings(wc).values() for p in paths],
            code=lib("attributes", "attributes_step", "embed_step", "seeds"),
        output:
            predictions="results/{dataset}/attributes/{model}/{strategy}/{train}/predictions.parquet",
            metrics="results/{dataset}/attributes/{model}/{strategy}/{train}/metrics.json",
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

    def figure_runs(wildcards):
        """The runs of one dataset and model whose figures one job draws."""
        return [r for r in attribute_runs() if r["dataset"] == wildcards.dataset and r["model"] == wildcards.model]

    rule attributes_figures:
        wildcard_constraints:
            dataset=_alternatives(ATTR["datasets"]),
            model=_alternatives(ATTR["models"]),
        input:
            metrics=lambda wc: [f"{run_dir(r)}/metrics.json" for r in figure_runs(wc)],
            code=lib("attributes_step", "attributes"),
        output:
            expand(
                "results/figures/attributes/{{dataset}}/{{model}}/{strategy}/{train}/{kind}.png",
                strategy=ATTR["splits"],
                train=ATTR["train_variants"],
                kind=ATTRIBUTE_FIGURES,
            ),
        params:
            runs=lambda wc: [{"metrics": f"{run_dir(r)}/metrics.json", "dir": figure_dir(r)} for r in figure_runs(wc)],
        log:
            "results/logs/figures/attributes/{dataset}/{model}.log",
        resources:
            mem_mb=1500,
            runtime=20,
        script:
            "../scripts/attributes_figures.py"

    # results/tables/attributes.csv also fits report.smk's `table` pattern when no table is configured
    ruleorder: attributes_table > table

    rule attributes_table:
        input:
            metrics=[f"{run_dir(r)}/metrics.json" for r in attribute_runs()],
            # the tables are delivered with the figures of every run
            figures=[f"{figure_dir(r)}/{kind}.png" for r in attribute_runs() for kind in ATTRIBUTE_FIGURES],
            code=lib("attributes_step", "attributes", "tables"),
        output:
            csv=ATTRIBUTE_TABLES[0],
            md="results/tables/attributes.md",
            by_group=ATTRIBUTE_TABLES[1],
            by_group_md="results/tables/attributes_by_group.md",
        params:
            entries=[
                {"dataset": r["dataset"], "model": r["model"], "split": r["strategy"],
                 "train_variant": r["train"], "path": f"{run_dir(r)}/metrics.json"}
                for r in attribute_runs()
            ],
            splits=ATTR["splits"],
        log:
            "results/logs/tables/attributes.log",
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../scripts/attributes_table.py"
