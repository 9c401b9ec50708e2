# Papers B and C: analyses of each IMP chain (init seed x rewind step k), switched on per
# experiment under `analyses:`. Each writes per-chain files, assembled into one table per
# analysis (results/tables/<exp>/<table>.csv) and one figure per table.


localrules:
    rounds,
    aggregate_analysis,
    figure_analysis,


rule successive:
    input:
        unpack(successive_inputs),
    output:
        paths.SUCCESSIVE,
    params:
        hp=train_hparams,
        interp=interp_hparams,
        code=code_of("interpolate"),
    threads: job_threads
    resources:
        **JOB_RESOURCES,
        **job_costs("successive", group=successive_group),
    group:
        successive_group
    conda:
        ENV
    log:
        paths.fill(paths.CHAIN_LOG, name="successive_L{level}"),
    shell:
        "python -m lmcpipe interpolate --hparams {params.hp:q} --interp {params.interp:q}"
        " --copy1 {input.copy1:q} --copy2 {input.copy2:q} --out {output:q}"
        " --threads {threads:q}"
        " --device {resources.device:q} --jobs-per-gpu {resources.jobs_per_gpu:q}"
        " --cpu-slots {resources.cpu_slots:q} --deterministic {resources.deterministic:q}"
        " > {log:q} 2>&1"


rule rounds:
    input:
        unpack(rounds_inputs),
    output:
        [paths.fill(paths.ROUND_TABLE, table=t) for t in paths.ROUND_TABLES],
    params:
        fraction=lambda w: exp_of(w).prune.fraction,
        counting=lambda w: exp_of(w).prune.counting,
        bins=lambda w: exp_of(w).analyses.histogram_bins,
        out=lambda w: paths.rounds_dir(w.exp, w.seed, w.k),
        code=code_of("rounds"),
    conda:
        ENV
    log:
        paths.fill(paths.CHAIN_LOG, name="rounds"),
    shell:
        "python -m lmcpipe rounds --rewind {input.rewind:q} --models {input.models:q}"
        " --masks {input.masks:q} --fraction {params.fraction:q} --counting {params.counting:q}"
        " --bins {params.bins:q}"
        " --out-dir {params.out:q} > {log:q} 2>&1"


rule curvature:
    input:
        unpack(curvature_inputs),
    output:
        paths.CURVATURE,
    params:
        hp=train_hparams,
        analyses=lambda w: to_json(exp_of(w).analyses),
        fraction=lambda w: exp_of(w).prune.fraction,
        counting=lambda w: exp_of(w).prune.counting,
        mask=mask_args,
        code=code_of("curvature"),
    threads: job_threads
    resources:
        **JOB_RESOURCES,
        **job_costs("curvature", group=group_of),
    group:
        group_of
    conda:
        ENV
    log:
        paths.fill(paths.CHAIN_LOG, name="curvature_L{level}"),
    shell:
        "python -m lmcpipe curvature --hparams {params.hp:q} --analyses {params.analyses:q}"
        " --model {input.model:q} {params.mask:q} --fraction {params.fraction:q}"
        " --counting {params.counting:q}"
        " --seed {wildcards.seed:q} --k {wildcards.k:q} --level {wildcards.level:q}"
        " --out {output:q}"
        " --threads {threads:q}"
        " --device {resources.device:q} --jobs-per-gpu {resources.jobs_per_gpu:q}"
        " --cpu-slots {resources.cpu_slots:q} --deterministic {resources.deterministic:q}"
        " > {log:q} 2>&1"


# Paper C probes: the perturbed starts (perturb) and one-shot masks (oneshot) of one level, all
# arms in one job; the arms are the experiment's, hence one rule per experiment.
for _exp in EXPERIMENTS.values():
    if plan.probes(_exp, "perturb"):

        rule:
            name:
                f"perturb_start_{_exp.name}"
            input:
                unpack(perturb_start_inputs),
            output:
                probe_setup_outputs(_exp, "perturb"),
            wildcard_constraints:
                exp=re.escape(_exp.name),
            params:
                scales=[f"{p.scale:g}" for p in probe_arms(_exp, "perturb")],
                mask=mask_args,
                code=code_of("perturb"),
            threads: aux_threads
            resources:
                **AUX_RESOURCES,
                **job_costs("perturb_start", group=probe_group),
            group:
                probe_group
            conda:
                ENV
            log:
                paths.fill(paths.PROBE_LOG, probe="perturb", name="start"),
            shell:
                "python -m lmcpipe perturb --rewind {input.rewind:q} {params.mask:q}"
                " --mask-next {input.mask_next:q} --scale {params.scales:q}"
                " --seed {wildcards.seed:q} --k {wildcards.k:q} --level {wildcards.level:q}"
                " --out {output:q} > {log:q} 2>&1"

    if plan.probes(_exp, "oneshot"):

        rule:
            name:
                f"oneshot_mask_{_exp.name}"
            input:
                unpack(oneshot_mask_inputs),
            output:
                probe_setup_outputs(_exp, "oneshot"),
            wildcard_constraints:
                exp=re.escape(_exp.name),
            params:
                fraction=lambda w: exp_of(w).prune.fraction,
                counting=lambda w: exp_of(w).prune.counting,
                methods=[p.method for p in probe_arms(_exp, "oneshot")],
                steps=[p.steps for p in probe_arms(_exp, "oneshot")],
                mask=mask_args,
                code=code_of("oneshot-mask"),
            threads: aux_threads
            resources:
                **AUX_RESOURCES,
                **job_costs("oneshot_mask", group=probe_group),
            group:
                probe_group
            conda:
                ENV
            log:
                paths.fill(paths.PROBE_LOG, probe="oneshot", name="masks"),
            shell:
                "python -m lmcpipe oneshot-mask --model {input.model:q} {params.mask:q}"
                " --fraction {params.fraction:q} --counting {params.counting:q}"
                " --steps {params.steps:q} --method {params.methods:q}"
                " --seed {wildcards.seed:q} --k {wildcards.k:q} --level {wildcards.level:q}"
                " --out {output:q} > {log:q} 2>&1"


# The probe runs themselves and their paths: cohort rules in train.smk and interpolate.smk.


rule aggregate_analysis:
    input:
        lambda w: plan.analysis_inputs(exp_of(w), w.table),
    output:
        paths.TABLE,
    wildcard_constraints:
        table="|".join(paths.ANALYSIS_TABLES),
    params:
        exp=lambda w: table_json(exp_of(w)),
        code=code_of("aggregate-analysis"),
    conda:
        ENV
    log:
        paths.fill(paths.LOG, name="table_{table}"),
    shell:
        "python -m lmcpipe aggregate-analysis --experiment {params.exp:q}"
        " --table {wildcards.table:q}"
        " --out {output:q} > {log:q} 2>&1"


use rule figure as figure_analysis with:
    input:
        figure_tables,
    wildcard_constraints:
        figure="|".join(ANALYSIS_FIGURES),
