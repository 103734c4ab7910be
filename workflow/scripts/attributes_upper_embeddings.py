"""dlib's embeddings of one variant's chips blanked below the nose (the upper face)."""
from maskbench.stages.attribute_upper_embeddings import upper_face_embeddings
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    upper_face_embeddings(
        aligned_paths=list(snakemake.input.aligned),
        masked_paths=list(snakemake.input.masked),
        split_path=snakemake.input.split,
        out_path=snakemake.output[0],
        threads=snakemake.threads,
        cache_dir=snakemake.params.cache_dir,
    )
