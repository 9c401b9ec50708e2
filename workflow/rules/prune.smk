# Pruning stages: IMP masks (global magnitude, nested) and the random-pruning baseline's masks.


rule prune:
    input:
        unpack(prune_inputs),
    output:
        paths.MASK.replace("{variant}", "imp"),
    wildcard_constraints:
        level=r"[1-9]\d*",
    params:
        fraction=lambda w: exp_of(w).prune.fraction,
        mask=mask_args,
        code=codever.version("prune"),
    threads: aux_threads
    resources:
        mem_mb=mem_mb_of,
        runtime=runtime_of,
        gpu=gpu_of,
        gpu_model=gpu_model_of,
        gres=gres_of,
        device=device_of,
    group:
        group_of
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/{exp}/s{seed}/k{k}/imp/L{level}/prune.log",
    shell:
        "python -m lmcpipe prune --model {input.model} {params.mask} --fraction {params.fraction}"
        " --level {wildcards.level} --out {output} > {log} 2>&1"


rule random_mask:
    input:
        paths.MASK.replace("{variant}", "imp"),
    output:
        paths.MASK.replace("{variant}", "randprune"),
    params:
        code=codever.version("random_mask"),
    threads: aux_threads
    resources:
        mem_mb=mem_mb_of,
        runtime=runtime_of,
        gpu=gpu_of,
        gpu_model=gpu_model_of,
        gres=gres_of,
        device=device_of,
    group:
        group_of
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/{exp}/s{seed}/k{k}/randprune/L{level}/mask.log",
    shell:
        "python -m lmcpipe random-mask --mask {input} --seed {wildcards.seed} --k {wildcards.k}"
        " --level {wildcards.level} --out {output} > {log} 2>&1"
