# Training stages: W_0, rewind points W_k, the dense run, IMP retraining and pair copies.
# All call `lmcpipe train` (or `init`); they differ in start point, mask and data order.


rule init:
    output:
        paths.INIT,
    params:
        hp=train_hparams,
        code=codever.version("train"),
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
        "logs/{exp}/s{seed}/init.log",
    shell:
        "python -m lmcpipe init --hparams {params.hp} --seed {wildcards.seed} --out {output} > {log} 2>&1"


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
        code=codever.version("train"),
    threads: job_threads
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
        "logs/{exp}/s{seed}/rewind_k{k}.log",
    shell:
        "python -m lmcpipe train --hparams {params.hp} --seed {wildcards.seed} --start {input.start}"
        " --stop-step {wildcards.k} --order {params.order} --copy 1 --model-out {output}"
        " --threads {threads}"
        " --device {resources.device} > {log} 2>&1"


rule dense:
    input:
        unpack(lambda w: {"start": paths.INIT.format(**w), "data": dataset_files(w)}),
    output:
        model=f"{paths.DENSE}/{paths.MODEL}",
        metrics=f"{paths.DENSE}/{paths.METRICS}",
    params:
        hp=train_hparams,
        order=lambda w: exp_of(w).chain_order,
        code=codever.version("train"),
    threads: job_threads
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
        "logs/{exp}/s{seed}/dense.log",
    shell:
        "python -m lmcpipe train --hparams {params.hp} --seed {wildcards.seed} --start {input.start}"
        " --order {params.order} --copy 1 --model-out {output.model}"
        " --metrics-out {output.metrics} --threads {threads}"
        " --device {resources.device} > {log} 2>&1"


rule retrain:
    input:
        unpack(run_inputs),
    output:
        model=f"{paths.RETRAIN}/{paths.MODEL}",
        metrics=f"{paths.RETRAIN}/{paths.METRICS}",
    params:
        hp=train_hparams,
        order=lambda w: exp_of(w).chain_order,
        start=start_args,
        start_step=start_step,
        mask=mask_args,
        refs=refs_args,
        code=codever.version("train"),
    threads: job_threads
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
        "logs/{exp}/s{seed}/k{k}/{variant}/L{level}/retrain.log",
    shell:
        "python -m lmcpipe train --hparams {params.hp} --seed {wildcards.seed} {params.start}"
        " --start-step {params.start_step} --level {wildcards.level}"
        " {params.mask} {params.refs}"
        " --order {params.order} --copy 1 --model-out {output.model}"
        " --metrics-out {output.metrics} --threads {threads}"
        " --device {resources.device} > {log} 2>&1"


rule fork:
    input:
        unpack(run_inputs),
    output:
        model=f"{paths.FORK}/{paths.MODEL}",
        metrics=f"{paths.FORK}/{paths.METRICS}",
    params:
        hp=train_hparams,
        start=start_args,
        start_step=start_step,
        mask=mask_args,
        refs=refs_args,
        code=codever.version("train"),
    threads: job_threads
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
        "logs/{exp}/s{seed}/k{k}/{variant}/L{level}/d{order}c{cp}.log",
    shell:
        "python -m lmcpipe train --hparams {params.hp} --seed {wildcards.seed} {params.start}"
        " --start-step {params.start_step} --level {wildcards.level}"
        " {params.mask} {params.refs}"
        " --order {wildcards.order} --copy {wildcards.cp} --model-out {output.model}"
        " --metrics-out {output.metrics} --threads {threads}"
        " --device {resources.device} > {log} 2>&1"
