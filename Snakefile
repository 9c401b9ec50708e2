# lmcpipe: lottery tickets and linear mode connectivity, stage by stage.
# Targets are assembled here; rules live in workflow/rules/ by stage.

configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/prune.smk"
include: "workflow/rules/interpolate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/sweeps.smk"
include: "workflow/rules/pages.smk"


rule all:
    input:
        all_targets(config["all"]),
        paths.REPORT_INDEX,
    default_target: True
