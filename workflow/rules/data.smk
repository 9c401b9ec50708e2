# Datasets: downloaded by torchvision only when absent and the network answers.

from pathlib import Path

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
            # data_root itself, normalised as pathlib writes the outputs ("./data" stays "data").
            # A function, as --lint takes a literal prefix of the outputs for a path that needs
            # a shared filesystem; but training reads the datasets from data_root itself anyway.
            root=lambda w: str(Path(config["data_root"])),
        conda:
            ENV
        log:
            paths.DOWNLOAD_LOG.format(dataset=_dataset),
        shell:
            "python -m lmcpipe download --dataset {params.dataset:q} --root {params.root:q}"
            " > {log:q} 2>&1"
