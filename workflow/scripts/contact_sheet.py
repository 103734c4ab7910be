"""Real-masked chips beside synthetic masked chips of the same people."""
from maskbench.stages.contact_sheet import write_contact_sheet
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    n = snakemake.params.shards
    masked = list(snakemake.input.masked)
    write_contact_sheet(
        aligned=list(snakemake.input.aligned),
        masked={m: masked[i * n:(i + 1) * n] for i, m in enumerate(snakemake.params.masks)},
        out_png=snakemake.output[0],
    )
