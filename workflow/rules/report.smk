# tables, figures and the HTML report (snakemake --report report.html).


rule table:
    conda:
        "../../envs/evaluate.yaml"
    wildcard_constraints:
        table=one_of(config["tables"]),  # no table configured: match nothing
    input:
        cells=table_cell_files,
        figures=table_figures,
        code=script_code("table"),
    output:
        csv=report(
            PATHS["table"],
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}"},
        ),
        md=PATHS["table_md"],
    params:
        spec=lambda wc: config["tables"][wc.table],
        cells=table_cells,
        # models (or their members) trained elsewhere on undeclared data: footnoted
        unknown=lambda wc: {m: unknown_provenance(config, m)
                            for m in config["tables"][wc.table].get("models") or config["models"]},
        # ensembles z-normalised on pairs that may share images with the tested ones: footnoted
        normalised_on=lambda wc: table_normalised_on(config, wc.table),
    log:
        "results/logs/tables/{table}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/table.py"


rule all_metrics:
    conda:
        "../../envs/evaluate.yaml"
    input:
        metrics=[e["path"] for e in metric_entries()],
        code=script_code("all_metrics"),
    output:
        csv=report(
            path("table", table="all_metrics"),
            caption="../report/all_metrics.rst",
            category="Tables",
            labels={"table": "all metrics"},
        ),
        md=path("table_md", table="all_metrics"),
    params:
        entries=metric_entries(),
    log:
        "results/logs/tables/all_metrics.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/all_metrics.py"


# metrics per demographic group of the datasets with `group_by`
rule metrics_by_group:
    conda:
        "../../envs/evaluate.yaml"
    input:
        metrics=[e["path"] for e in metric_entries() if config["datasets"][e["dataset"]].get("group_by")],
        code=script_code("metrics_by_group"),
    output:
        csv=report(
            path("table", table="metrics_by_group"),
            caption="../report/metrics_by_group.rst",
            category="Tables",
            labels={"table": "metrics by group"},
        ),
        md=path("table_md", table="metrics_by_group"),
    params:
        entries=[e for e in metric_entries() if config["datasets"][e["dataset"]].get("group_by")],
    log:
        "results/logs/tables/metrics_by_group.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/metrics_by_group.py"


rule curve_figures:
    conda:
        "../../envs/evaluate.yaml"
    input:
        scores=lambda wc: [c["path"] for c in roc_curves(wc)],
        code=script_code("curve_figures"),
    output:
        roc=report(
            PATHS["figure"].replace("{figure}", "roc"),
            caption="../report/roc.rst",
            category="Figures",
            labels={"figure": "ROC", "dataset": "{dataset}"},
        ),
        det=report(
            PATHS["figure"].replace("{figure}", "det"),
            caption="../report/det.rst",
            category="Figures",
            labels={"figure": "DET", "dataset": "{dataset}"},
        ),
        hist=report(
            PATHS["figure"].replace("{figure}", "scores"),
            caption="../report/scores.rst",
            category="Figures",
            labels={"figure": "score histograms", "dataset": "{dataset}"},
        ),
        pdfs=[PATHS["figure_pdf"].replace("{figure}", f) for f in ("roc", "det", "scores")],
    params:
        curves=roc_curves,
        protocol=lambda wc: figure_protocol(config, wc.dataset),
    log:
        "results/logs/figures/curves_{dataset}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/curve_figures.py"


rule mask_effect_figure:
    conda:
        "../../envs/evaluate.yaml"
    input:
        metrics=lambda wc: [r["path"] for r in mask_effect_rows(wc)],
        code=script_code("mask_effect_figure"),
    output:
        png=report(
            PATHS["figure"].replace("{figure}", "mask_effect"),
            caption="../report/mask_effect.rst",
            category="Figures",
            labels={"figure": "mask effect", "dataset": "{dataset}"},
        ),
        pdf=PATHS["figure_pdf"].replace("{figure}", "mask_effect"),
    params:
        rows=mask_effect_rows,
        protocol=lambda wc: figure_protocol(config, wc.dataset),
    log:
        "results/logs/figures/mask_effect_{dataset}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/mask_effect_figure.py"


# the ablation table: every model x {unmasked, each mask type}: EER, FNMR@FMR 1e-3, rank-1, and the
# kept epoch of trained models (deterministic); their wall time is measured, so it has its own table
rule models_table:
    conda:
        "../../envs/evaluate.yaml"
    input:
        metrics=[e["path"] for e in metric_entries()],
        identification=[e["path"] for e in identification_entries()],
        reports=list(trained_model_reports().values()),
        code=script_code("models_table"),
    output:
        csv=report(
            path("table", table="models"),
            caption="../report/models.rst",
            category="Tables",
            labels={"table": "models"},
        ),
        md=path("table_md", table="models"),
        png=path("figure_any", name="models"),
        pdf=path("figure_any_pdf", name="models"),
    params:
        metrics=metric_entries(),
        identification=identification_entries(),
        reports=trained_model_reports(),
    log:
        "results/logs/tables/models.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/models_table.py"


rule training_time:
    conda:
        "../../envs/evaluate.yaml"
    input:
        reports=list(trained_model_reports().values()),
        code=script_code("training_time"),
    output:
        csv=PATHS["training_time"],
        md=PATHS["training_time_md"],
    params:
        benchmarks=training_benchmarks(),
    log:
        "results/logs/tables/training_time.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=lambda wc, attempt: 5 * attempt,
    script:
        "../scripts/training_time.py"
