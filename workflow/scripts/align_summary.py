"""Count a dataset's alignment statuses; stop with one clear message if no face was usable at all."""
from maskbench.stages.align import write_align_summary
from maskbench.errors import exit_on_user_error
from maskbench.logs import log_to

with exit_on_user_error(), log_to(snakemake.log[0]):
    write_align_summary(
        dataset=snakemake.wildcards.dataset,
        shard_paths=list(snakemake.input.shards),
        usable=list(snakemake.params.usable),
        out_path=snakemake.output[0],
    )
