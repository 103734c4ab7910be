# mask{mask}: one mask type painted onto every aligned chip from its landmarks. A mask type's
# spec is a param, so editing one entry of `masks:` re-runs that branch and nothing else.

# `paint_on: image` (per mask type, or `align.paint_on` for all) paints on the original photo and
# then detects and aligns the masked photo, so that rule also reads the index and the raw images.


rule mask:
    conda:
        "../../envs/faces.yaml"
    input:
        unpack(mask_photo_inputs),
        aligned=PATHS["aligned"],
        pattern=mask_pattern_image,
        code=script_code("mask"),
    output:
        PATHS["masked"],
    params:
        spec=lambda wc: config["masks"][wc.mask],
        seed=SEED,
        paint_on=mask_paint_on,
        align=config["align"],
        images=dataset_images,
    log:
        "results/logs/mask/{dataset}/{mask}/shard-{shard}.log",
    benchmark:
        "results/benchmarks/mask/{dataset}/{mask}/shard-{shard}.tsv"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/mask.py"
