# tables, figures and the HTML report (snakemake --report report.html).


def table_cells(wildcards):
    """(dataset, model) -> metrics file of the comparison a table reports."""
    spec = config["tables"][wildcards.table]
    datasets = spec.get("datasets") or list(config["datasets"])
    models = spec.get("models") or list(config["models"])
    comparison = f"{spec['ref_variant']}-vs-{spec['probe_variant']}"
    cells = {}
    for dataset in datasets:
        protocol = (spec.get("protocol") or {}).get(dataset, config["datasets"][dataset]["protocols"][0])
        for model in models:
            cells[f"{dataset}/{model}"] = f"results/{dataset}/metrics/{model}/{protocol}/{comparison}.json"
    return cells


rule table:
    wildcard_constraints:
        table="|".join(config["tables"]),
    input:
        cells=lambda wc: list(table_cells(wc).values()),
        # a table is delivered with the ROC figures of its datasets
        figures=lambda wc: [
            f"results/figures/roc_{d}.png"
            for d in config["tables"][wc.table].get("datasets") or config["datasets"]
        ],
        code=lib("tables"),
    output:
        csv=report(
            "results/tables/{table}.csv",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        md="results/tables/{table}.md",
    params:
        spec=lambda wc: config["tables"][wc.table],
        cells=table_cells,
    log:
        "results/logs/tables/{table}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/table.py"


def metric_entries():
    return [
        {"dataset": d, "model": m, "protocol": p, "comparison": c,
         "path": f"results/{d}/metrics/{m}/{p}/{c}.json"}
        for d in config["datasets"]
        for p in config["datasets"][d]["protocols"]
        for c in comparisons_for(config, d, p)
        for m in config["models"]
    ]


rule all_metrics:
    input:
        metrics=[e["path"] for e in metric_entries()],
        code=lib("tables"),
    output:
        csv=report(
            "results/tables/all_metrics.csv",
            caption="../report/all_metrics.rst",
            category="Tables",
            labels={"table": "all metrics"},
        ),
        md="results/tables/all_metrics.md",
    params:
        entries=metric_entries(),
    log:
        "results/logs/tables/all_metrics.log",
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/all_metrics.py"


def roc_curves(wildcards):
    protocol = config["datasets"][wildcards.dataset]["protocols"][0]
    return [
        {"label": f"{model}: {comparison.replace('-vs-', ' vs ')}",
         "path": f"results/{wildcards.dataset}/scores/{model}/{protocol}/{comparison}.parquet"}
        for comparison in comparisons_for(config, wildcards.dataset, protocol)
        for model in config["models"]
    ]


rule curve_figures:
    input:
        scores=lambda wc: [c["path"] for c in roc_curves(wc)],
        code=lib("figures", "metrics"),
    output:
        roc=report(
            "results/figures/roc_{dataset}.png",
            caption="../report/roc.rst",
            category="Figures",
            labels={"figure": "ROC", "dataset": "{dataset}"},
        ),
        det=report(
            "results/figures/det_{dataset}.png",
            caption="../report/det.rst",
            category="Figures",
            labels={"figure": "DET", "dataset": "{dataset}"},
        ),
        hist=report(
            "results/figures/scores_{dataset}.png",
            caption="../report/scores.rst",
            category="Figures",
            labels={"figure": "score histograms", "dataset": "{dataset}"},
        ),
        pdfs=multiext("results/figures/", "roc_{dataset}.pdf", "det_{dataset}.pdf", "scores_{dataset}.pdf"),
    params:
        curves=roc_curves,
    log:
        "results/logs/figures/curves_{dataset}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/curve_figures.py"


def mask_effect_rows(wildcards):
    protocol = config["datasets"][wildcards.dataset]["protocols"][0]
    return [
        {"model": m, "comparison": c, "path": f"results/{wildcards.dataset}/metrics/{m}/{protocol}/{c}.json"}
        for c in comparisons_for(config, wildcards.dataset, protocol)
        for m in config["models"]
    ]


rule mask_effect_figure:
    input:
        metrics=lambda wc: [r["path"] for r in mask_effect_rows(wc)],
        code=lib("figures"),
    output:
        png=report(
            "results/figures/mask_effect_{dataset}.png",
            caption="../report/mask_effect.rst",
            category="Figures",
            labels={"figure": "mask effect", "dataset": "{dataset}"},
        ),
        pdf="results/figures/mask_effect_{dataset}.pdf",
    params:
        rows=mask_effect_rows,
    log:
        "results/logs/figures/mask_effect_{dataset}.log",
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/mask_effect_figure.py"
