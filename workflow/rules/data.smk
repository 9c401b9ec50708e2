# Datasets: downloaded by torchvision only when absent and the network answers.


rule download:
    output:
        download_outputs(config["data_root"], "{dataset}"),
    wildcard_constraints:
        dataset="|".join(DATASETS),
    params:
        root=lambda w, output: os.path.dirname(os.path.dirname(output[0])),
    conda:
        "../envs/lmcpipe.yaml"
    log:
        "logs/download_{dataset}.log",
    shell:
        "python -m lmcpipe download --dataset {wildcards.dataset} --root {params.root} > {log} 2>&1"
