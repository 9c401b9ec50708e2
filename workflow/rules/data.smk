# Datasets: downloaded by torchvision only when absent and the network answers.

for _dataset in [name for name in DATASETS if download_targets(name, config["data_root"])]:

    rule:
        name:
            f"download_{_dataset}"
        # where Snakemake runs (a cluster's login node): it found the network answering there
        localrule: True
        output:
            download_outputs(config["data_root"], _dataset),
        params:
            dataset=_dataset,
            root=download_root,
        conda:
            "../envs/lmcpipe.yaml"
        log:
            f"logs/download_{_dataset}.log",
        shell:
            "python -m lmcpipe download --dataset {params.dataset} --root {params.root} > {log} 2>&1"
