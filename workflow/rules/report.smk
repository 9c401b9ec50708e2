# Aggregation into tidy tables, and one target per figure. Both are cheap: local rules.


localrules:
    aggregate,
    figure,


rule aggregate:
    input:
        lambda w: experiment_inputs(exp_of(w)),
    output:
        [reported_table(t) for t in paths.TABLES],
    params:
        exp=lambda w: table_json(without_analyses(exp_of(w))),
        out=lambda w: paths.tables_dir(w.exp),
        classes=lambda w: DATASETS[exp_of(w).train.dataset].num_classes,
        code=code_of("aggregate"),
    conda:
        ENV
    log:
        paths.fill(paths.LOG, name="aggregate"),
    shell:
        "python -m lmcpipe aggregate --experiment {params.exp:q} --out-dir {params.out:q}"
        " --classes {params.classes:q} > {log:q} 2>&1"


# Paper A's figures of an experiment, as a PDF and as the PNG both reports show; the papers
# B/C figures (analyses.smk) and a sweep's (sweeps.smk) are this rule with other tables.
rule figure:
    input:
        [paths.fill(paths.TABLE, table=t) for t in paths.TABLES],
    output:
        pdf=paths.FIGURE,
        png=reported_figure(paths.FIGURE_PNG, "{exp}"),
    wildcard_constraints:
        figure="|".join(PAPER_A_FIGURES),
    params:
        tables=lambda w: paths.tables_dir(w.exp),
        threshold=lambda w: exp_of(w).interp.threshold,
        caption=figure_caption,
        code=code_of("figure"),
    conda:
        ENV
    log:
        paths.fill(paths.LOG, name="figure_{figure}"),
    shell:
        "python -m lmcpipe figure --name {wildcards.figure:q} --tables {params.tables:q}"
        " --threshold {params.threshold:q} --out {output.pdf:q} --png {output.png:q} > {log:q} 2>&1"
