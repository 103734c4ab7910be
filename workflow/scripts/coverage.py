"""The coverage table: per dataset, how many images were aligned and masked by each mask type."""
import json

import pandas as pd

from maskbench.logs import log_to
from maskbench.io.summaries import coverage_row
from maskbench.reporting.tables import write_frame


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


with log_to(snakemake.log[0]):
    rows = []
    for dataset, masks in snakemake.params.datasets.items():
        aligned = load(f"results/{dataset}/aligned/summary.json")
        masked = {m: load(f"results/{dataset}/masked/{m}/summary.json") for m in masks}
        rows.append(coverage_row(dataset, aligned, masked))
    write_frame(pd.DataFrame(rows), snakemake.output.csv, "coverage", index=False)
