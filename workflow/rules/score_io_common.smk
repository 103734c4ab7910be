# Input functions of the score import/export rules (score_io.smk).
from maskbench.config import imported_score_path


def imported_score_file(wildcards):
    """The file an imported model's scores are read from, for this dataset, protocol and comparison."""
    spec = config["models"][wildcards.model]
    return imported_score_path(spec["scores"], wildcards.dataset, wildcards.protocol, wildcards.comparison)


def imported_pairs(wildcards):
    """The pairs manifest a CSV score file is matched to; Bob files carry their own labels."""
    if config["models"][wildcards.model]["format"] != "csv":
        return []
    return [f"results/{wildcards.dataset}/pairs/{wildcards.protocol}.parquet"]
