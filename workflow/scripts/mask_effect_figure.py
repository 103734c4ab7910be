"""Bar chart of EER per variant comparison and model for one dataset."""
import json

from maskbench.reporting.figures import mask_effect_figure
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    rows = []
    for row in snakemake.params.rows:
        with open(row["path"], encoding="utf-8") as f:
            rows.append({**row, "eer": json.load(f)["eer"]})
    mask_effect_figure(rows, f"What each mask costs: {snakemake.wildcards.dataset}", snakemake.output.png)
