# Paper B sweeps: an experiment with `sweep:` runs as one experiment per combination of
# training values; these rules gather the members' tables and draw the sweep's figures.


localrules:
    sweep_table,
    sweep_figure,


rule sweep_table:
    input:
        lambda w: [paths.table(m, t) for m in SWEEPS[w.sweep]
                   for t in paths.SWEEP_SOURCES.values()],
    output:
        [paths.fill(paths.SWEEP_TABLE, table=t) for t in paths.SWEEP_TABLES],
    params:
        members=lambda w: json.dumps(sweep_values(w.sweep)),
        settings=lambda w: json.dumps(SWEEPS[w.sweep]),
        out=lambda w: paths.sweep_tables_dir(w.sweep),
        root=lambda w: paths.TABLES_ROOT,
        code=code_of("sweep-table"),
    conda:
        ENV
    log:
        paths.fill(paths.SWEEP_LOG, name="tables"),
    shell:
        "python -m lmcpipe sweep-table --name {wildcards.sweep:q} --members {params.members:q}"
        " --settings {params.settings:q}"
        " --tables-root {params.root:q} --out-dir {params.out:q} > {log:q} 2>&1"


use rule figure as sweep_figure with:
    input:
        [paths.fill(paths.SWEEP_TABLE, table=t) for t in paths.SWEEP_TABLES],
    output:
        pdf=paths.SWEEP_FIGURE,
        png=reported_figure(paths.SWEEP_FIGURE_PNG, "{sweep}"),
    wildcard_constraints:
        figure="|".join(SWEEP_FIGURES),
    params:
        tables=lambda w: paths.sweep_tables_dir(w.sweep),
        threshold=lambda w: EXPERIMENTS[next(iter(SWEEPS[w.sweep]))].interp.threshold,
        caption=figure_caption,
        code=code_of("figure"),
    log:
        paths.fill(paths.SWEEP_LOG, name="figure_{figure}"),
