# Interpolation between the two copies of a pair.


rule interpolate:
    input:
        unpack(pair_inputs),
    output:
        paths.PATH,
    params:
        hp=train_hparams,
        interp=interp_hparams,
        code=codever.version("interpolate"),
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
        "logs/{exp}/s{seed}/k{k}/{variant}/L{level}/d{order}_interpolate.log",
    shell:
        "python -m lmcpipe interpolate --hparams {params.hp} --interp {params.interp}"
        " --copy1 {input.copy1} --copy2 {input.copy2} --out {output}"
        " --threads {threads}"
        " --device {resources.device} > {log} 2>&1"
