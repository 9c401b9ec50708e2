# Interpolation between the two copies of each pair: one job per cohort (lmcpipe
# interpolate-pairs), which reads the data and builds the network once for all its pairs.

for _exp in EXPERIMENTS.values():
    for _kind in cohort_rule_kinds(_exp):
        if not cohort_path_outputs(_exp, _kind):
            continue

        rule:
            name:
                f"interpolate_{_kind}_{_exp.name}"
            input:
                unpack(cohort_pair_inputs(_kind)),
            output:
                cohort_path_outputs(_exp, _kind),
            wildcard_constraints:
                exp=re.escape(_exp.name),
                k=COHORT_K[_kind],
                level=cohort_level_constraint(_exp, _kind),
            params:
                hp=train_hparams,
                interp=interp_hparams,
                pairs=cohort_pairs(_kind),
                code=code_of("interpolate-pairs"),
            threads: job_threads
            resources:
                **JOB_RESOURCES,
                **job_costs("interpolate", _kind, cohort_group(_kind)),
            group:
                cohort_group(_kind)
            conda:
                ENV
            log:
                cohort_log(_kind, "interpolate"),
            shell:
                "python -m lmcpipe interpolate-pairs --hparams {params.hp:q}"
                " --interp {params.interp:q}"
                " --pairs {params.pairs:q} --threads {threads:q}"
                " --device {resources.device:q} --jobs-per-gpu {resources.jobs_per_gpu:q}"
                " --cpu-slots {resources.cpu_slots:q} --deterministic {resources.deterministic:q}"
                " > {log:q} 2>&1"
