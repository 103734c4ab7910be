# The realism table and figure: per dataset with photos of real masks and per model, unmasked ->
# real beside unmasked -> each synthetic mask type, on the same people.
from maskbench.config import realism_protocol


def realism_entries():
    """Metrics and scores of unmasked-vs-real and unmasked-vs-<mask> of every real-masked dataset's
    first verification protocol that compares unmasked with real, for every model it evaluates."""
    out = []
    for dataset in config["datasets"]:
        protocol = realism_protocol(config, dataset)
        if protocol is None:
            continue
        comparisons = [c for c in comparisons_for(config, dataset, protocol)
                       if c == "unmasked-vs-real" or (c.startswith("unmasked-vs-") and c[12:] in config["masks"])]
        for model in config["models"]:
            if not evaluable(config, model, dataset, protocol):
                continue
            for comparison in comparisons:
                out.append({"dataset": dataset, "model": model, "protocol": protocol, "comparison": comparison,
                            "metrics": f"results/{dataset}/metrics/{model}/{protocol}/{comparison}.json",
                            "scores": f"results/{dataset}/scores/{model}/{protocol}/{comparison}.parquet"})
    return out


def realism_targets():
    return ["results/tables/realism.csv", "results/figures/realism.png"] if realism_entries() else []


if realism_entries():

    rule realism:
        conda:
            "../../envs/evaluate.yaml"
        input:
            metrics=[e["metrics"] for e in realism_entries()],
            scores=[e["scores"] for e in realism_entries()],
            code=lib("realism", "metrics", "figures", "tables"),
        output:
            csv=report(
                "results/tables/realism.csv",
                caption="../report/realism.rst",
                category="Tables",
                labels={"table": "realism"},
            ),
            md="results/tables/realism.md",
            png=report(
                "results/figures/realism.png",
                caption="../report/realism.rst",
                category="Figures",
                labels={"figure": "realism"},
            ),
            pdf="results/figures/realism.pdf",
        params:
            entries=realism_entries(),
            evaluation=config.get("evaluation", {}),
        log:
            "results/logs/tables/realism.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=lambda wc, attempt: 20 * attempt,
        script:
            "../scripts/realism.py"
