"""The realism table (CSV, Markdown) and figure: real masks beside synthetic ones; and unmasked ->
real per kind of real mask where the set labels them (MFR2)."""
from pathlib import Path

from maskbench.data.index import mfr2_mask_types
from maskbench.io.readers import load_acquired
from maskbench.logs import log_to
from maskbench.reporting.realism import by_type_rows, realism_figure, realism_rows
from maskbench.reporting.tables import write_frame

with log_to(snakemake.log[0]):
    frame = realism_rows(snakemake.params.entries, snakemake.params.evaluation)
    write_frame(frame, snakemake.output.csv, "realism: unmasked reference vs real and synthetic masks", index=False)
    realism_figure(frame, snakemake.output.png)
    types = {
        dataset: mfr2_mask_types(Path(load_acquired(spec["acquired"])[spec["images"]]["path"]), spec["options"])
        for dataset, spec in snakemake.params.labelled.items()
    }
    by_type = by_type_rows(snakemake.params.entries, types, snakemake.params.evaluation)
    write_frame(by_type, snakemake.output.by_type, "realism by kind of real mask: unmasked reference vs real", index=False)
