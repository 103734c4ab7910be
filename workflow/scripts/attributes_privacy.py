"""The privacy table and figure: what a mask hides from an attacker, per attribute."""
from maskbench.logs import log_to
from maskbench.stages.privacy import write_privacy

with log_to(snakemake.log[0]):
    write_privacy(
        entries=list(snakemake.params.entries),
        masks={d: list(m) for d, m in snakemake.params.masks.items()},
        tasks=list(snakemake.params.tasks),
        age_groups=list(snakemake.params.age_groups),
        seed=snakemake.params.seed,
        n_boot=snakemake.params.bootstrap,
        csv_path=snakemake.output.csv,
        png_path=snakemake.output.figure,
    )
