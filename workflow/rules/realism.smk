# The realism table and figure: per dataset with photos of real masks and per model, unmasked ->
# real beside unmasked -> each synthetic mask type, on the same people.

if realism_entries():

    rule realism:
        conda:
            "../../envs/evaluate.yaml"
        input:
            metrics=[e["metrics"] for e in realism_entries()],
            scores=[e["scores"] for e in realism_entries()],
            index=sorted({e["index"] for e in realism_entries()}),
            acquired=[v["acquired"] for v in realism_labelled_sets().values()],
            code=script_code("realism"),
        output:
            csv=report(
                path("table", table="realism"),
                caption="../report/realism.rst",
                category="Tables",
                labels={"table": "realism"},
            ),
            md=path("table_md", table="realism"),
            by_type=path("table", table="realism_by_type"),
            by_type_md=path("table_md", table="realism_by_type"),
            png=report(
                path("figure_any", name="realism"),
                caption="../report/realism.rst",
                category="Figures",
                labels={"figure": "realism"},
            ),
            pdf=path("figure_any_pdf", name="realism"),
        params:
            entries=realism_entries(),
            labelled=realism_labelled_sets(),
            evaluation=config.get("evaluation", {}),
        log:
            "results/logs/tables/realism.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/realism.py"


# real-masked photos beside the same people's bare photos masked with each synthetic type
rule contact_sheet:
    conda:
        "../../envs/faces.yaml"
    wildcard_constraints:
        dataset=one_of(contact_sheet_datasets()),
    input:
        unpack(contact_sheet_inputs),
        code=script_code("contact_sheet"),
    output:
        report(
            PATHS["figure_any"].replace("{name}", "contact_sheet_{dataset}"),
            caption="../report/contact_sheet.rst",
            category="Figures",
            labels={"figure": "contact sheet", "dataset": "{dataset}"},
        ),
    params:
        masks=lambda wc: masks_for(config, wc.dataset),
        shards=lambda wc: len(shards(wc.dataset)),
    log:
        "results/logs/figures/contact_sheet_{dataset}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=lambda wc, attempt: 10 * attempt,
    script:
        "../scripts/contact_sheet.py"
