# Interpolation between the two copies of a pair.


def pair_inputs(wildcards):
    exp = exp_of(wildcards)
    pair = plan.Pair(int(wildcards.seed), int(wildcards.k), wildcards.variant,
                     int(wildcards.level), int(wildcards.order))
    return {"copy1": run_model(exp, pair.copy(1)), "copy2": run_model(exp, pair.copy(2)),
            "data": dataset_files(wildcards)}


rule interpolate:
    input:
        unpack(pair_inputs),
    output:
        paths.PATH,
    params:
        hp=train_hparams,
        interp=interp_hparams,
        code=codever.version("interpolate"),
    threads: threads_of
    log:
        "logs/{exp}/s{seed}/k{k}/{variant}/L{level}/d{order}_interpolate.log",
    shell:
        "{LMCPIPE} interpolate --hparams {params.hp} --interp {params.interp}"
        " --copy1 {input.copy1} --copy2 {input.copy2} --out {output}"
        " --threads {threads} > {log} 2>&1"
