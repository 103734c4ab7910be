"""Align the images of one shard of a dataset."""
from maskbench.stages.align import align_shard
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    align_shard(
        index_path=snakemake.input.index,
        acquired_json=snakemake.input.acquired,
        images_key=snakemake.params.images,
        shard=int(snakemake.wildcards.shard),
        align_cfg=snakemake.params.align,
        fallback_box=snakemake.params.fallback_box,
        out_path=snakemake.output[0],
        faces_path=snakemake.input.faces or None,
    )
