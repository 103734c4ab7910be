# maskbench: from public face datasets to the masked-face papers' tables.
#   snakemake --cores 2 results/tables/benchmark2.csv          (default config, demo data)
#   snakemake all --cores 16 --configfile config/lfw.yaml       (real data; targets before --configfile)
from snakemake.utils import min_version

min_version("9.0")


# The default config applies only when none is given (--configfile), so a real config is never
# mixed with the demo dataset.
if not config:

    configfile: "config/config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/mask.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/mask_aware.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/score_io.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/attributes.smk"
include: "workflow/rules/identify.smk"
include: "workflow/rules/realism.smk"


rule all:
    input:
        all_targets(),
        attribute_targets(),
        identification_targets(),
        realism_targets(),
        contact_sheet_targets(),
    default_target: True


cache_signatures(workflow.rules)
