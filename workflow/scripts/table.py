"""Write one configured table (rows datasets, columns models) as CSV and Markdown."""
from maskbench.logs import log_to
from maskbench.reporting.tables import metric_table, provenance_footnotes, write_frame

with log_to(snakemake.log[0]):
    spec = snakemake.params.spec
    cells = {tuple(k.split("/")): v for k, v in snakemake.params.cells.items()}
    datasets = list(dict.fromkeys(d for d, _ in cells))
    models = list(dict.fromkeys(m for _, m in cells))
    frame = metric_table(cells, spec["metric"], datasets, models, spec.get("with_ci", False))
    title = f"{snakemake.wildcards.table}: {spec['metric']}, {spec['ref_variant']} vs {spec['probe_variant']}"
    write_frame(frame, snakemake.output.csv, title, footnotes=provenance_footnotes(snakemake.params.unknown))
