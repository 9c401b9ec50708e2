import dataclasses
import json
import os
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from lmcpipe import codever, paths, plan
from lmcpipe.config import ConfigError, validate_with_sweeps
from lmcpipe.data import DATASETS, download_targets, find, missing_message, network_answers
from lmcpipe.hparams import AnalysisHParams, to_json

try:
    EXPERIMENTS, SWEEPS = validate_with_sweeps(
        config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml"
    )
except ConfigError as e:
    raise WorkflowError(str(e)) from None

# Jobs run `python -m lmcpipe` with the Python that runs Snakemake (e.g. .venv/bin/python, also
# when that environment is not activated) or, with --use-conda, the rule's conda environment;
# lmcpipe itself is taken from this checkout's src/ either way.
# Shell prefix (formatted by Snakemake, hence the doubled braces).
shell.prefix(
    "set -euo pipefail; "
    f"export PATH={shlex.quote(os.path.dirname(sys.executable))}:$PATH; "
    f"export PYTHONPATH={shlex.quote(os.path.join(workflow.basedir, 'src'))}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
)


wildcard_constraints:
    exp="|".join(EXPERIMENTS),
    seed=r"\d+",
    k=r"\d+",
    level=r"\d+",
    order=r"\d+",
    cp="[12]",
    variant="|".join(paths.VARIANTS),
    probe="|".join(paths.PROBES),
    sweep="|".join(SWEEPS) or "(?!)",
    arm=r"c[0-9.e+-]+|(magnitude|random)\d+",


def exp_of(wildcards):
    return EXPERIMENTS[wildcards.exp]


def quoted(text):
    return shlex.quote(text)


def train_hparams(wildcards):
    """TrainHParams JSON; as a param it reruns exactly the jobs whose training changed."""
    return quoted(to_json(exp_of(wildcards).train))


def interp_hparams(wildcards):
    return quoted(to_json(exp_of(wildcards).interp))


def dataset_files(wildcards):
    """The dataset's IDX files as inputs; a missing dataset stops the run before any job."""
    hp = exp_of(wildcards).train
    files = find(hp.dataset, hp.data_root)
    if files is not None:
        return [str(f) for f in files]
    info = DATASETS[hp.dataset]
    if network_answers(info.download_host, info.download_port):
        return download_outputs(hp.data_root, hp.dataset)  # rule download fetches them
    if workflow.dryrun:  # show the plan anyway; a real run stops here
        logger.warning(f"experiments.{wildcards.exp}.dataset: {hp.dataset} is not on disk")
        return download_outputs(hp.data_root, hp.dataset)
    raise WorkflowError(
        f"config key experiments.{wildcards.exp}.dataset: "
        + missing_message(hp.dataset, hp.data_root)
    )


def download_outputs(data_root, dataset):
    return [str(p) for p in download_targets(dataset, data_root)]


def download_root(wildcards, output):
    """The data root a download rule writes under, recovered from its first output."""
    first = str(output[0])
    for name in DATASETS:
        for target in download_targets(name, "ROOT"):
            suffix = str(target).removeprefix("ROOT")
            if first.endswith(suffix):
                return first[: -len(suffix)] or "."
    raise WorkflowError(f"no dataset downloads to {first}")


def run_model(exp, run):
    return f"{run.dir(exp)}/{paths.MODEL}"


def start_args(wildcards, input):
    """--start W_k, or --reinit for the random-reinitialisation baseline."""
    if wildcards.variant == "reinit":
        return "--reinit"
    return f"--start {input.start}"


def start_step(wildcards):
    """Schedule position of a run's start: k, or 0 for the restarted-schedule control."""
    return 0 if wildcards.variant == "restart" else wildcards.k


def mask_args(wildcards, input):
    return f"--mask {input.mask}" if "mask" in input.keys() else ""


def run_inputs(wildcards):
    """Start point, mask and data of a retrain or fork job."""
    exp = exp_of(wildcards)
    inputs = {"data": dataset_files(wildcards)}
    if wildcards.variant != "reinit":
        inputs["start"] = paths.rewind(exp.name, wildcards.seed, wildcards.k)
    mask = paths.mask(exp.name, wildcards.seed, wildcards.k, wildcards.variant,
                      int(wildcards.level))
    if mask is not None:
        inputs["mask"] = mask
    level = int(wildcards.level)
    if exp.train.repel_lambda and wildcards.variant == "imp" and level >= 1:
        # paper B's repellent/attractive loss: the chain's optima of the earlier rounds
        inputs["references"] = [
            paths.chain_model(exp.name, wildcards.seed, int(wildcards.k), lvl, exp.chain_order)
            for lvl in range(level)]
    return inputs


def refs_args(wildcards, input):
    return "--references " + " ".join(input.references) if "references" in input.keys() else ""


def experiment_inputs(exp):
    """Everything the tables of an experiment are read from."""
    runs = plan.runs(exp)
    files = [run_model(exp, r) for r in runs]
    files += [f"{r.dir(exp)}/{paths.METRICS}" for r in runs]
    files += sorted({r.mask(exp) for r in runs if r.mask(exp)})
    files += [plan.path_file(exp, p) for p in plan.pairs(exp)]
    return files


def all_targets(names):
    """Paper-A figures of each experiment and the papers B/C figures it switches on; for a
    sweep, those of every member and the sweep's own figures."""
    out = []
    for n in names:
        if n in SWEEPS:
            out += all_targets(list(SWEEPS[n]))
            out += [paths.SWEEP_FIGURE.format(figure=f, sweep=n) for f in paths.SWEEP_FIGURES]
            continue
        out += [paths.figure(n, f) for f in paths.FIGURES]
        out += [paths.figure(n, f) for f in enabled_analyses(EXPERIMENTS[n])]
    return out


def sweep_values(name):
    """{member: {swept key: value}} of a sweep, values as the members train with (iterations)."""
    return {m: {key: getattr(EXPERIMENTS[m].train, key) for key in keys}
            for m, keys in SWEEPS[name].items()}


def without_analyses(exp):
    """The experiment as paper A's tables see it: switching papers B/C analyses on or off does
    not rerun them."""
    return dataclasses.replace(exp, analyses=AnalysisHParams())


def enabled_tables(exp):
    """Papers B/C tables whose analysis the experiment switches on."""
    return [t for t, switch in paths.ANALYSIS_TABLES.items() if getattr(exp.analyses, switch)]


def enabled_analyses(exp):
    """Papers B/C figures of the experiment: those whose first (required) table is on."""
    on = enabled_tables(exp)
    return [f for f, tables in paths.ANALYSIS_FIGURES.items() if tables[0] in on]


def figure_tables(wildcards):
    """The tables a papers B/C figure reads: its own, and optional ones that are switched on."""
    exp = exp_of(wildcards)
    first, *optional = paths.ANALYSIS_FIGURES[wildcards.figure]
    on = enabled_tables(exp)
    return [paths.table(exp.name, t) for t in [first, *[t for t in optional if t in on]]]


def probe_group(wildcards):
    """Probe runs from level L join level L + 1's job group (they need θ_L and m_(L+1))."""
    return f"{wildcards.exp}_s{wildcards.seed}_k{wildcards.k}_L{int(wildcards.level) + 1}"


def perturb_start_inputs(wildcards):
    exp, k, level = exp_of(wildcards), int(wildcards.k), int(wildcards.level)
    inputs = {"rewind": paths.rewind(exp.name, wildcards.seed, k),
              "mask_next": paths.mask(exp.name, wildcards.seed, k, "imp", level + 1)}
    if level:
        inputs["mask"] = paths.mask(exp.name, wildcards.seed, k, "imp", level)
    return inputs


def oneshot_mask_inputs(wildcards):
    exp, k, level = exp_of(wildcards), int(wildcards.k), int(wildcards.level)
    inputs = {"model": paths.chain_model(exp.name, wildcards.seed, k, level, exp.chain_order)}
    if level:
        inputs["mask"] = paths.mask(exp.name, wildcards.seed, k, "imp", level)
    return inputs


def probe_train_inputs(wildcards):
    """Perturb: the perturbed start and m_(L+1); oneshot: W_k and the one-shot mask."""
    exp, k, level = exp_of(wildcards), int(wildcards.k), int(wildcards.level)
    here = paths.probe(exp.name, wildcards.seed, k, wildcards.probe, level, wildcards.arm)
    if wildcards.probe == "perturb":
        inputs = {"start": f"{here}/start.pt",
                  "mask": paths.mask(exp.name, wildcards.seed, k, "imp", level + 1)}
    else:
        inputs = {"start": paths.rewind(exp.name, wildcards.seed, k), "mask": f"{here}/mask.pt"}
    return {**inputs, "data": dataset_files(wildcards)}


def probe_path_inputs(wildcards):
    """The probe run (copy1) and its reference (copy2): θ_(L+1) for perturb, θ_L for oneshot."""
    exp, k, level = exp_of(wildcards), int(wildcards.k), int(wildcards.level)
    here = paths.probe(exp.name, wildcards.seed, k, wildcards.probe, level, wildcards.arm)
    ref = level + 1 if wildcards.probe == "perturb" else level
    return {"copy1": f"{here}/{paths.MODEL}",
            "copy2": paths.chain_model(exp.name, wildcards.seed, k, ref, exp.chain_order),
            "data": dataset_files(wildcards)}


def successive_inputs(wildcards):
    """θ_L and θ_{L+1} of a chain (copy1 and copy2 of the path) and the data."""
    exp, k, level = exp_of(wildcards), int(wildcards.k), int(wildcards.level)
    seed = wildcards.seed
    return {"copy1": paths.chain_model(exp.name, seed, k, level, exp.chain_order),
            "copy2": paths.chain_model(exp.name, seed, k, level + 1, exp.chain_order),
            "data": dataset_files(wildcards)}


def successive_group(wildcards):
    """The path between levels L and L + 1 runs in level L + 1's job group."""
    return f"{wildcards.exp}_s{wildcards.seed}_k{wildcards.k}_L{int(wildcards.level) + 1}"


def rounds_inputs(wildcards):
    exp, seed, k = exp_of(wildcards), int(wildcards.seed), int(wildcards.k)
    return {"rewind": paths.rewind(exp.name, seed, k), "models": plan.chain_models(exp, seed, k),
            "masks": plan.chain_masks(exp, seed, k)}


def curvature_inputs(wildcards):
    """θ_L and m_L of a chain, and the data."""
    exp, k, level = exp_of(wildcards), int(wildcards.k), int(wildcards.level)
    inputs = {"model": paths.chain_model(exp.name, wildcards.seed, k, level, exp.chain_order),
              "data": dataset_files(wildcards)}
    if level:
        inputs["mask"] = paths.mask(exp.name, wildcards.seed, k, "imp", level)
    return inputs


def prune_inputs(wildcards):
    exp = exp_of(wildcards)
    level, k = int(wildcards.level), int(wildcards.k)
    inputs = {"model": paths.chain_model(exp.name, wildcards.seed, k, level - 1, exp.chain_order)}
    if level >= 2:
        inputs["mask"] = paths.mask(exp.name, wildcards.seed, k, "imp", level - 1)
    return inputs


def pair_inputs(wildcards):
    exp = exp_of(wildcards)
    pair = plan.Pair(int(wildcards.seed), int(wildcards.k), wildcards.variant,
                     int(wildcards.level), int(wildcards.order))
    return {"copy1": run_model(exp, pair.copy(1)), "copy2": run_model(exp, pair.copy(2)),
            "data": dataset_files(wildcards)}


# --- Scheduler resources and job groups (SLURM: profiles/slurm) -------------------------------
# Portable facts come from the experiment's `resources:` section (defaults filled in by
# validation); site facts (how to ask for a GPU, its model) from `cluster:`, which the profile sets.
def resources_of(wildcards):
    return config["experiments"][wildcards.exp]["resources"]


def wants_gpu(wildcards):
    res = resources_of(wildcards)
    return res["gpu"] or res["require_gpu"]


def mem_mb_of(wildcards):
    return resources_of(wildcards)["mem_mb"]


def runtime_of(wildcards, attempt):
    """Minutes; a retried job (profile `retries:`) gets attempt times the first limit."""
    return attempt * resources_of(wildcards)["runtime_min"]


def job_threads(wildcards):
    """Threads of a training or interpolation job (`threads:` of the experiment)."""
    return _serial_if_gpu(wildcards, exp_of(wildcards).threads)


def aux_threads(wildcards):
    """Threads of the small jobs that share a job group with training (init, masks)."""
    return _serial_if_gpu(wildcards, 1)


def _serial_if_gpu(wildcards, threads):
    """In a GPU experiment every grouped job takes all --cores, so that a job group runs its jobs
    one after another on its one GPU: Snakemake adds up the GPUs of jobs it would run side by
    side (and the remote job that runs a group does not see --resources limits)."""
    return max(threads, workflow.cores) if wants_gpu(wildcards) else threads


def gpu_of(wildcards):
    """Resource gpu (sbatch --gpus=[model:]1) when the site asks for GPUs with --gpus."""
    return int(wants_gpu(wildcards) and config["cluster"]["gpu_flag"] == "gpus")


def gpu_model_of(wildcards):
    return config["cluster"]["gpu_model"] if gpu_of(wildcards) else ""


def gres_of(wildcards):
    """Resource gres (sbatch --gres=gpu:[model:]1) when the site asks for GPUs with --gres."""
    if not wants_gpu(wildcards) or config["cluster"]["gpu_flag"] != "gres":
        return ""
    model = config["cluster"]["gpu_model"]
    return f"gpu:{model}:1" if model else "gpu:1"


def device_of(wildcards):
    """--device of train/interpolate: cuda (fail without a GPU) or auto (CUDA, else the CPU).

    A resource, not a param: choosing the device does not rerun finished jobs."""
    return "cuda" if resources_of(wildcards)["require_gpu"] else "auto"


def group_of(wildcards):
    """Job group: on a cluster, one batch job per (experiment, seed, k, level) runs that level's
    pruning, training runs and interpolations (W_0 and the dense run belong to k0/L0; W_k to
    k<k>/L0). Groups are ignored by local runs."""
    k = wildcards.get("k", "0")
    level = wildcards.get("level", "0")
    return f"{wildcards.exp}_s{wildcards.seed}_k{k}_L{level}"
