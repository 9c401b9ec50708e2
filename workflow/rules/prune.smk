# Pruning: level n's IMP mask (global magnitude, nested) and, in the same job, the random-pruning
# baseline's mask (the IMP mask shuffled within each layer); mask jobs are mostly imports.


rule prune:
    input:
        unpack(prune_inputs),
    output:
        imp=paths.fill(paths.MASK, variant="imp"),
        random=paths.fill(paths.MASK, variant="randprune"),
    wildcard_constraints:
        level=r"[1-9]\d*",
    params:
        fraction=lambda w: exp_of(w).prune.fraction,
        counting=lambda w: exp_of(w).prune.counting,
        mask=mask_args,
        code=code_of("prune"),
    threads: aux_threads
    priority: CHAIN_PRIORITY
    resources:
        **AUX_RESOURCES,
        **job_costs("prune", group=prune_group),
    group:
        prune_group
    conda:
        ENV
    log:
        paths.PRUNE_LOG,
    shell:
        "python -m lmcpipe prune --model {input.model:q} {params.mask:q}"
        " --fraction {params.fraction:q}"
        " --counting {params.counting:q}"
        " --level {wildcards.level:q} --out {output.imp:q} --random-out {output.random:q}"
        " --seed {wildcards.seed:q} --k {wildcards.k:q} > {log:q} 2>&1"
