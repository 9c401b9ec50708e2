# Paper B sweeps: an experiment with `sweep:` runs as one experiment per combination of
# training values; these rules gather the members' tables and draw the sweep's figures.


localrules:
    sweep_table,
    sweep_figure,


rule sweep_table:
    input:
        lambda w: [paths.table(m, t) for m in SWEEPS[w.sweep] for t in ("runs", "instability")],
    output:
        [paths.SWEEP_TABLE.replace("{table}", t) for t in paths.SWEEP_TABLES],
    params:
        members=lambda w: quoted(json.dumps(sweep_values(w.sweep))),
        settings=lambda w: quoted(json.dumps(SWEEPS[w.sweep])),
        out=lambda w, output: output[0].rsplit("/", 1)[0],
        root=lambda w: paths.TABLES_ROOT,
        code=codever.version("sweep"),
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/sweeps/{sweep}/tables.log",
    shell:
        "python -m lmcpipe sweep-table --name {wildcards.sweep} --members {params.members}"
        " --settings {params.settings}"
        " --tables-root {params.root} --out-dir {params.out} > {log} 2>&1"


rule sweep_figure:
    input:
        [paths.SWEEP_TABLE.replace("{table}", t) for t in paths.SWEEP_TABLES],
    output:
        paths.SWEEP_FIGURE,
    wildcard_constraints:
        figure="|".join(paths.SWEEP_FIGURES),
    params:
        tables=lambda w, input: input[0].rsplit("/", 1)[0],
        threshold=lambda w: EXPERIMENTS[next(iter(SWEEPS[w.sweep]))].interp.threshold,
        code=codever.version("figures"),
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/sweeps/{sweep}/figure_{figure}.log",
    shell:
        "python -m lmcpipe figure --name {wildcards.figure} --tables {params.tables}"
        " --threshold {params.threshold} --out {output} > {log} 2>&1"
