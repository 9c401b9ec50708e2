# lmcpipe's reproduction report: the papers' claims (src/lmcpipe/report/claims.yaml) judged on
# each experiment's tables, one static page per experiment or sweep and an index. A rebuilt
# table or figure rebuilds its page; `rule all` builds the index. Cheap: local rules.


localrules:
    report_page,
    report_sweep_page,
    report_index,


rule report_page:
    input:
        tables=lambda w: page_tables(exp_of(w)),
        figures=lambda w: figure_pngs(all_targets([w.exp])),
    output:
        page=paths.REPORT_PAGE,
        claims=report(paths.REPORT_CLAIMS, caption="../report/claims.rst",
                      category="Reproduction", labels={"of": "{exp}"}),
    params:
        exp=lambda w: table_json(exp_of(w)),
        tables=lambda w: paths.tables_dir(w.exp),
        figures=lambda w: flag("--figures", ",".join(experiment_figures(exp_of(w)))),
        sweep=[],
        members=[],
        code=code_of("report"),
    conda:
        ENV
    log:
        paths.fill(paths.REPORT_LOG, name="{exp}"),
    shell:
        "python -m lmcpipe report --experiment {params.exp:q} {params.sweep:q}"
        " {params.members:q} --tables {params.tables:q} {params.figures:q}"
        " --out {output.page:q} --claims-out {output.claims:q} > {log:q} 2>&1"


use rule report_page as report_sweep_page with:
    input:
        tables=[paths.fill(paths.SWEEP_TABLE, table=t) for t in paths.SWEEP_TABLES],
        figures=lambda w: figure_pngs(paths.sweep_figure(w.sweep, f) for f in SWEEP_FIGURES),
    output:
        page=paths.REPORT_SWEEP_PAGE,
        claims=report(paths.REPORT_SWEEP_CLAIMS, caption="../report/claims.rst",
                      category="Reproduction", labels={"of": "{sweep}"}),
    params:
        exp=lambda w: table_json(EXPERIMENTS[next(iter(SWEEPS[w.sweep]))]),
        tables=lambda w: paths.sweep_tables_dir(w.sweep),
        figures=flag("--figures", ",".join(SWEEP_FIGURES)),
        sweep=lambda w: flag("--sweep", w.sweep),
        members=lambda w: flag("--members", json.dumps(list(SWEEPS[w.sweep]))),
        code=code_of("report"),
    log:
        paths.fill(paths.REPORT_LOG, name="{sweep}"),


rule report_index:
    input:
        pages=[paths.report_page(n) for n in report_names(config["all"])],
        claims=[paths.report_claims(n) for n in report_names(config["all"])],
    output:
        paths.REPORT_INDEX,
    params:
        names=report_names(config["all"]),
        code=code_of("report-index"),
    conda:
        ENV
    log:
        paths.fill(paths.REPORT_LOG, name="index"),
    shell:
        "python -m lmcpipe report-index --names {params.names:q} --claims {input.claims:q}"
        " --out {output:q} > {log:q} 2>&1"
