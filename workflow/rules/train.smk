# Training stages: W_0, rewind points W_k, and the cohorts (the dense run, IMP retraining and
# pair copies of one seed, k and level trained together by `lmcpipe cohort`).


rule init:
    output:
        paths.INIT,
    params:
        hp=train_hparams,
        code=code_of("init"),
    threads: aux_threads
    priority: CHAIN_PRIORITY
    resources:
        **AUX_RESOURCES,
        **job_costs("init", group=chain_group),
    group:
        chain_group
    conda:
        ENV
    log:
        paths.fill(paths.SEED_LOG, name="init"),
    shell:
        "python -m lmcpipe init --hparams {params.hp:q} --seed {wildcards.seed:q}"
        " --out {output:q} > {log:q} 2>&1"


rule rewind:
    input:
        unpack(lambda w: {"start": paths.INIT.format(**w), "data": dataset_files(w)}),
    output:
        paths.REWIND,
    wildcard_constraints:
        k=r"[1-9]\d*",
    params:
        hp=train_hparams,
        order=lambda w: exp_of(w).chain_order,
        code=code_of("train"),
    threads: job_threads
    priority: CHAIN_PRIORITY
    resources:
        **JOB_RESOURCES,
        **job_costs("rewind", group=chain_group),
        compile=compile_of,
    group:
        chain_group
    conda:
        ENV
    log:
        paths.fill(paths.SEED_LOG, name="rewind_k{k}"),
    shell:
        "python -m lmcpipe train --hparams {params.hp:q} --seed {wildcards.seed:q}"
        " --start {input.start:q}"
        " --stop-step {wildcards.k:q} --order {params.order:q} --copy 1 --model-out {output:q}"
        " --threads {threads:q}"
        " --device {resources.device:q} --jobs-per-gpu {resources.jobs_per_gpu:q}"
        " --cpu-slots {resources.cpu_slots:q} --deterministic {resources.deterministic:q}"
        " --compile {resources.compile:q} > {log:q} 2>&1"


# --- cohorts: the runs of one (seed, k, level) trained by one job (lmcpipe.training.cohort) --
# One rule per (experiment, cohort kind): which runs a cohort holds depends on the experiment's
# orders and baselines, and a rule's outputs are fixed patterns. Every run keeps its own
# model.pt and metrics.csv (the retrain/dense aliases of lmcpipe.paths included). The chain's
# own run (kinds dense and chain) is a job of its own, scheduled first: the next level waits for
# it alone.
for _exp in EXPERIMENTS.values():
    for _kind in cohort_rule_kinds(_exp):

        rule:
            name:
                f"cohort_{_kind}_{_exp.name}"
            input:
                unpack(cohort_inputs(_kind)),
            output:
                cohort_outputs(_exp, _kind),
            wildcard_constraints:
                exp=re.escape(_exp.name),
                k=COHORT_K[_kind],
                level=cohort_level_constraint(_exp, _kind),
            params:
                hp=train_hparams,
                members=cohort_members(_kind),
                start_step=cohort_start_step(_kind),
                level=cohort_level(_kind),
                code=code_of("cohort"),
            threads: job_threads
            priority: cohort_priority(_kind)
            resources:
                **JOB_RESOURCES,
                **job_costs("cohort", _kind, cohort_group(_kind)),
                stack=stack_of,
                compile=compile_of,
            group:
                cohort_group(_kind)
            conda:
                ENV
            log:
                cohort_log(_kind, "train"),
            shell:
                "python -m lmcpipe cohort --hparams {params.hp:q} --seed {wildcards.seed:q}"
                " --start-step {params.start_step:q} --level {params.level:q}"
                " --members {params.members:q} --stack {resources.stack:q} --threads {threads:q}"
                " --device {resources.device:q} --jobs-per-gpu {resources.jobs_per_gpu:q}"
                " --cpu-slots {resources.cpu_slots:q} --deterministic {resources.deterministic:q}"
                " --compile {resources.compile:q} > {log:q} 2>&1"
