# Pruning: level n's IMP mask (global magnitude, nested) and, in the same job, the random-pruning
# baseline's mask (the IMP mask shuffled within each layer); mask jobs are mostly imports.


rule prune:
    input:
        unpack(prune_inputs),
    output:
        imp=paths.MASK.replace("{variant}", "imp"),
        random=paths.MASK.replace("{variant}", "randprune"),
    wildcard_constraints:
        level=r"[1-9]\d*",
    params:
        fraction=lambda w: exp_of(w).prune.fraction,
        counting=lambda w: exp_of(w).prune.counting,
        mask=mask_args,
        code=codever.version("prune"),
    threads: aux_threads
    resources:
        **JOB_RESOURCES,
    group:
        group_of
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/{exp}/s{seed}/k{k}/imp/L{level}/prune.log",
    shell:
        "python -m lmcpipe prune --model {input.model} {params.mask} --fraction {params.fraction}"
        " --counting {params.counting}"
        " --level {wildcards.level} --out {output.imp} --random-out {output.random}"
        " --seed {wildcards.seed} --k {wildcards.k} > {log} 2>&1"
