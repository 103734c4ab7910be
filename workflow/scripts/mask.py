"""Paint one mask type onto one shard of aligned chips."""
from maskbench.logs import log_to
from maskbench.stages.mask import mask_shard

with log_to(snakemake.log[0]):
    mask_shard(
        aligned_path=snakemake.input.aligned,
        mask_name=snakemake.wildcards.mask,
        spec=snakemake.params.spec,
        seed=snakemake.params.seed,
        out_path=snakemake.output[0],
        photos=None if snakemake.params.paint_on != "image" else {
            "index_path": snakemake.input.index,
            "acquired_json": snakemake.input.acquired,
            "images_key": snakemake.params.images,
            "align_cfg": snakemake.params.align,
        },
    )
