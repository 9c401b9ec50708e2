# Aggregation into tidy tables, and one target per figure. Both are cheap: local rules.


localrules:
    aggregate,
    figure,


rule aggregate:
    input:
        lambda w: experiment_inputs(exp_of(w)),
    output:
        [paths.TABLE.replace("{table}", t) for t in paths.TABLES],
    params:
        exp=lambda w: table_json(without_analyses(exp_of(w))),
        out=lambda w: paths.TABLE.format(exp=w.exp, table="x").rsplit("/", 1)[0],
        classes=lambda w: DATASETS[exp_of(w).train.dataset].num_classes,
        code=codever.version("aggregate"),
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/{exp}/aggregate.log",
    shell:
        "python -m lmcpipe aggregate --experiment {params.exp} --out-dir {params.out}"
        " --classes {params.classes} > {log} 2>&1"


rule figure:
    input:
        [paths.TABLE.replace("{table}", t) for t in paths.TABLES],
    output:
        paths.FIGURE,
    wildcard_constraints:
        figure="|".join(paths.FIGURES),
    params:
        tables=lambda w, input: input[0].rsplit("/", 1)[0],
        threshold=lambda w: exp_of(w).interp.threshold,
        code=codever.version("figures"),
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/{exp}/figure_{figure}.log",
    shell:
        "python -m lmcpipe figure --name {wildcards.figure} --tables {params.tables}"
        " --threshold {params.threshold} --out {output} > {log} 2>&1"
