"""The realism table (CSV, Markdown) and figure: real masks beside synthetic ones."""
from maskbench.logs import log_to
from maskbench.realism import realism_figure, realism_rows
from maskbench.tables import write_frame

with log_to(snakemake.log[0]):
    frame = realism_rows(snakemake.params.entries, snakemake.params.evaluation)
    write_frame(frame, snakemake.output.csv, "realism: unmasked reference vs real and synthetic masks", index=False)
    realism_figure(frame, snakemake.output.png)
