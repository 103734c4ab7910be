"""Index one dataset: a Parquet table of its images and a JSON of counts."""
from maskbench.stages.index import index_dataset
from maskbench.logs import log_to

with log_to(snakemake.log[0]):
    index_dataset(
        acquired_json=snakemake.input.acquired,
        layout=snakemake.params.layout,
        images_key=snakemake.params.images,
        n_shards=snakemake.params.shards,
        options=snakemake.params.options,
        table_path=snakemake.output.table,
        report_path=snakemake.output.report,
    )
