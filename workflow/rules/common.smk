import dataclasses
import functools
import json
import os
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

from lmcpipe import codever, paths, plan
from lmcpipe.config import ConfigError, validate_with_sweeps
from lmcpipe.data import (DATASETS, download_address, download_targets, find, missing_message,
                          network_answers, note)
from lmcpipe.figures.registry import (ANALYSIS_FIGURES, FIGURES, PAPER_A_FIGURES,
                                     PRUNED_FIGURES, SWEEP_FIGURES)
from lmcpipe.hparams import AnalysisHParams, to_json

try:
    EXPERIMENTS, SWEEPS = validate_with_sweeps(config)  # lmcpipe's schema, with defaults
except ConfigError as e:  # one line on stderr, exit 1 (a WorkflowError adds file and line)
    raise SystemExit(str(e)) from None

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
    exp="|".join(map(re.escape, EXPERIMENTS)),  # a name may hold "."
    seed=r"\d+",
    k=r"\d+",
    level=r"\d+",
    order=r"\d+",
    cp="[12]",
    variant="|".join(paths.VARIANTS),
    probe="|".join(paths.PROBES),
    sweep="|".join(map(re.escape, SWEEPS)) or "(?!)",
    arm=paths.ARM,


# The software environment of every job (--use-conda): lmcpipe and its dependencies.
ENV = "../envs/lmcpipe.yaml"


def code_of(stage):
    """Code version of the `lmcpipe <stage>` that jobs run: a hash of lmcpipe/stages/<stage>.py
    and of every lmcpipe module it imports, and, for an experiment on a network or dataset of
    the user's, of the user's sources that stage runs (codever.user_version). As a param,
    editing that code reruns the jobs that run it (and, through file times, what reads their
    outputs) and nothing else."""
    stage_module = f"stages.{stage.replace('-', '_')}"
    base = codever.version(stage_module)

    def of(wildcards):
        exp = EXPERIMENTS.get(wildcards.get("exp", ""))
        if exp is None:
            return base
        return base + codever.user_version(stage_module, exp.train.model, exp.train.dataset)

    return of


def exp_of(wildcards):
    return EXPERIMENTS[wildcards.exp]


# Every value reaches a job's shell line as `{...:q}`: Snakemake quotes it (shlex.quote), each
# element of a list on its own, and leaves out an empty one. So params hold plain values, never
# pre-quoted text, and an optional flag is a list: [] or ["--flag", value] (``flag``).
def flag(name, value):
    """``[name, value]`` for a shell line's ``{params.x:q}``, or ``[]`` (no flag) when empty."""
    return [name, str(value)] if value else []


def train_hparams(wildcards):
    """TrainHParams JSON; as a param it reruns exactly the jobs whose training changed."""
    return to_json(exp_of(wildcards).train)


def interp_hparams(wildcards):
    return to_json(exp_of(wildcards).interp)


# Every training job's input function needs the answer, and an unanswered ask waits out its 3 s
# timeout: ask once per (host, port) and Snakemake process.
_network_answers = functools.cache(network_answers)
_WARNED_MISSING = set()  # (dataset, data_root) a dry run has warned about
_WARNED_PARTIAL = set()  # (dataset, data_root) whose partial folder is passed over


def dataset_files(wildcards):
    """The dataset's IDX files as inputs; a missing dataset stops a real run before any job.

    A dry run never asks the network (offline, that cost up to 3 s per job): it warns once per
    dataset and shows the download in the plan."""
    hp = exp_of(wildcards).train
    files = find(hp.dataset, hp.data_root)
    if files is not None:
        why = note(hp.dataset, hp.data_root)  # a partial folder under data_root passed over
        if why and (hp.dataset, hp.data_root) not in _WARNED_PARTIAL:
            _WARNED_PARTIAL.add((hp.dataset, hp.data_root))
            logger.warning(f"experiments.{wildcards.exp}.dataset: {why}")
        return [str(f) for f in files]
    if DATASETS[hp.dataset].format == "converted":
        # torchvision's sets (and a user's own code): fetched and converted by the first job
        # that reads them, under a lock; offline, the config check has already said where to
        # put the files
        return []
    targets = download_outputs(hp.data_root, hp.dataset)  # rule download fetches them
    if workflow.dryrun:
        if (hp.dataset, hp.data_root) not in _WARNED_MISSING:
            _WARNED_MISSING.add((hp.dataset, hp.data_root))
            logger.warning(f"experiments.{wildcards.exp}.dataset: {hp.dataset} is not on disk "
                           f"under {hp.data_root}; a real run downloads it if the network "
                           "answers, or stops and says where to put it")
        return targets
    if targets and _network_answers(*download_address(hp.dataset)):
        return targets
    raise WorkflowError(
        f"config key experiments.{wildcards.exp}.dataset: "
        + missing_message(hp.dataset, hp.data_root)
    )


def download_outputs(data_root, dataset):
    return [str(p) for p in download_targets(dataset, data_root)]


def run_model(exp, run):
    return f"{run.dir(exp)}/{paths.MODEL}"


def mask_args(wildcards, input):
    return flag("--mask", input.mask if "mask" in input.keys() else "")


# --- cohorts (lmcpipe.plan): rules per (experiment, kind), in train.smk and interpolate.smk ---
COHORT_K = {"dense": "0", "fork0": "0", "fork": r"[1-9]\d*", "restart": r"[1-9]\d*",
            "chain": r"\d+", "level": r"\d+", "imp_level": r"\d+",
            **{probe: r"\d+" for probe in paths.PROBES}}
COHORT_LEVEL = {"dense": "0", "fork0": "0", "fork": "0", "restart": "0",
                **{probe: r"\d+" for probe in paths.PROBES}}


def cohort_level_constraint(exp, kind):
    """Wildcard constraint on {level} of a cohort kind: the pruning levels of that kind (the
    chain's run at every level; the rest with and without baselines, plan.kind_levels), so no
    two rules claim the same IMP files."""
    if kind in plan.LEVEL_KINDS:
        return "|".join(str(n) for n in plan.kind_levels(exp, kind))
    return COHORT_LEVEL[kind]


def cohort_rule_kinds(exp):
    """The cohort kinds of an experiment's training runs and of the paper C probes it runs."""
    return plan.cohort_kinds(exp) + [p for p in paths.PROBES if plan.probes(exp, p)]


def cohort_group(kind):
    """Job group (SLURM): the chain's own run goes with the chain's next step (chain_group);
    probe runs from level L join level L + 1's group (they need θ_L and m_(L+1)); every other
    cohort is its (seed, k, level)'s group."""
    if kind in paths.PROBES:
        return probe_group
    return chain_group if kind in plan.CHAIN_KINDS else group_of


def cohort_priority(kind):
    """Scheduler priority: a chain's own run first (and the jobs before it: init, rewind,
    prune), so that with fewer cores than ready jobs the chain never waits behind a level's
    other runs, which no later level needs."""
    return CHAIN_PRIORITY if kind in plan.CHAIN_KINDS else 0


def _cohort_where(kind):
    """k and level as they appear in a cohort kind's patterns."""
    k = 0 if kind in ("dense", "fork0") else "{k}"
    return k, ("{level}" if kind in plan.LEVEL_KINDS else 0)


def cohort_outputs(exp, kind):
    """model.pt and metrics.csv of every run of an experiment's cohort kind, as patterns."""
    if kind in paths.PROBES:
        return probe_outputs(exp, kind)
    k, level = _cohort_where(kind)
    dirs = [paths.run("{exp}", "{seed}", k, v, level, d, c, exp.chain_order)
            for v, d, c in plan.cohort_shape(exp, kind)]
    return [f"{d}/{name}" for d in dirs for name in (paths.MODEL, paths.METRICS)]


def cohort_path_outputs(exp, kind):
    if kind in paths.PROBES:
        return probe_path_outputs(exp, kind)
    k, level = _cohort_where(kind)
    return [paths.path("{exp}", "{seed}", k, v, level, d)
            for v, d in plan.cohort_pairs_shape(exp, kind)]


def cohort_log(kind, stage):
    if kind in paths.PROBES:
        return paths.fill(paths.PROBE_LOG, probe=kind, name=stage)
    k, level = _cohort_where(kind)
    return paths.fill(paths.COHORT_LOG, k=k, level=level, kind=kind, stage=stage)


def _where(wildcards):
    return int(wildcards.seed), int(wildcards.get("k", 0)), int(wildcards.get("level", 0))


def _cohort_of(wildcards, kind):
    """(experiment, start step, members) of the cohort a job trains: the runs of a cohort kind
    of lmcpipe.plan, or the paper C probe runs of one kind from one level of a chain."""
    exp = exp_of(wildcards)
    seed, k, level = _where(wildcards)
    if kind in paths.PROBES:
        return exp, k, [_probe_member(exp, p) for p in plan.probes(exp, kind)
                        if (p.seed, p.k, p.level) == (seed, k, level)]
    runs = plan.cohort(exp, seed, k, level, kind)
    return exp, plan.start_step(runs[0]), [_member(exp, r) for r in runs]


def _files(directory):
    return {"model_out": f"{directory}/{paths.MODEL}",
            "metrics_out": f"{directory}/{paths.METRICS}"}


def _member(exp, run):
    """What the cohort stage needs of one run: start point (none: random reinit), mask, paper
    B's references (the chain's earlier optima, for IMP runs of a repel experiment)."""
    refs = []
    if exp.train.repel_lambda and run.variant == "imp" and run.level >= 1:
        refs = [paths.chain_model(exp.name, run.seed, run.k, lvl, exp.chain_order)
                for lvl in range(run.level)]
    return {"order": run.order, "copy": run.copy, **_files(run.dir(exp)),
            "start": "" if run.variant == "reinit" else paths.rewind(exp.name, run.seed, run.k),
            "mask": run.mask(exp) or "", "references": refs}


def _probe_member(exp, probe):
    """Perturb: the perturbed start inside m_(L+1); oneshot: W_k with the one-shot mask. Both
    train with the chain's data order from step k."""
    here = probe.dir(exp)
    if probe.kind == "perturb":
        start = f"{here}/{paths.START}"
        mask = paths.mask(exp.name, probe.seed, probe.k, "imp", probe.level + 1)
    else:
        start, mask = paths.rewind(exp.name, probe.seed, probe.k), f"{here}/{paths.MASK_FILE}"
    return {"order": exp.chain_order, "copy": 1, **_files(here), "start": start, "mask": mask,
            "references": []}


def probe_arms(exp, kind):
    """One level's probes of a kind, one per arm (the arms are the same at every level)."""
    first = {}
    for p in plan.probes(exp, kind):
        first.setdefault(p.arm, p)
    return [first[arm] for arm in sorted(first)]


def probe_setup_outputs(exp, kind):
    """The perturbed starts or one-shot masks of a level's probes, one per arm."""
    return [f"{paths.fill(paths.PROBE, probe=kind, arm=p.arm)}/{paths.PROBE_SETUP[kind]}"
            for p in probe_arms(exp, kind)]


def probe_outputs(exp, kind):
    arms = sorted({p.arm for p in plan.probes(exp, kind)})
    dirs = [paths.fill(paths.PROBE, probe=kind, arm=arm) for arm in arms]
    return [f"{d}/{name}" for d in dirs for name in (paths.MODEL, paths.METRICS)]


def probe_path_outputs(exp, kind):
    arms = sorted({p.arm for p in plan.probes(exp, kind)})
    return [paths.fill(paths.PROBE_PATH, probe=kind, arm=arm) for arm in arms]


def cohort_inputs(kind):
    """Input function of a cohort rule: start points, masks, references and the data."""

    def inputs(wildcards):
        members = _cohort_of(wildcards, kind)[2]
        files = {"data": dataset_files(wildcards)}
        for key, name in (("start", "starts"), ("mask", "masks")):
            found = sorted({m[key] for m in members if m[key]})
            if found:
                files[name] = found
        refs = sorted({r for m in members for r in m["references"]})
        if refs:
            files["references"] = refs
        return files

    return inputs


def cohort_members(kind):
    """--members of a cohort job: a param, so changing the runs of a cohort reruns it."""
    return lambda wildcards: json.dumps(_cohort_of(wildcards, kind)[2])


def cohort_start_step(kind):
    return lambda wildcards: _cohort_of(wildcards, kind)[1]


def cohort_level(kind):
    return lambda wildcards: int(wildcards.get("level", 0))


def _cohort_pairs(wildcards, kind):
    """{copy1, copy2, out} of every path a cohort's interpolation job measures. Probes: the
    probe run against θ_(L+1) (perturb) or θ_L (oneshot) of the chain."""
    exp = exp_of(wildcards)
    seed, k, level = _where(wildcards)
    if kind in paths.PROBES:
        ref = paths.chain_model(exp.name, seed, k, level + (kind == "perturb"), exp.chain_order)
        return [{"copy1": f"{p.dir(exp)}/{paths.MODEL}", "copy2": ref,
                 "out": f"{p.dir(exp)}/{paths.PATH_FILE}"} for p in plan.probes(exp, kind)
                if (p.seed, p.k, p.level) == (seed, k, level)]
    pairs = [plan.Pair(seed, k, v, level, d) for v, d in plan.cohort_pairs_shape(exp, kind)]
    return [{"copy1": run_model(exp, p.copy(1)), "copy2": run_model(exp, p.copy(2)),
             "out": plan.path_file(exp, p)} for p in pairs]


def cohort_pair_inputs(kind):
    def inputs(wildcards):
        pairs = _cohort_pairs(wildcards, kind)
        return {"models": sorted({p[c] for p in pairs for c in ("copy1", "copy2")}),
                "data": dataset_files(wildcards)}

    return inputs


def cohort_pairs(kind):
    return lambda wildcards: json.dumps(_cohort_pairs(wildcards, kind))


def experiment_inputs(exp):
    """Everything the tables of an experiment are read from."""
    runs = plan.runs(exp)
    files = [run_model(exp, r) for r in runs]
    files += [f"{r.dir(exp)}/{paths.METRICS}" for r in runs]
    files += sorted({r.mask(exp) for r in runs if r.mask(exp)})
    files += [plan.path_file(exp, p) for p in plan.pairs(exp)]
    return files


def experiment_figures(exp):
    """The figures built for an experiment: paper A's (those of pruned subnetworks only when
    it prunes) and the papers B/C figures it switches on."""
    pruned = exp.prune.levels > 0
    return ([f for f in PAPER_A_FIGURES if pruned or f not in PRUNED_FIGURES]
            + enabled_analyses(exp))


def all_targets(names):
    """The figures of each experiment (``experiment_figures``); for a sweep, those of every
    member and the sweep's own figures."""
    out = []
    for n in names:
        if n in SWEEPS:
            out += all_targets(list(SWEEPS[n]))
            out += [paths.sweep_figure(n, f) for f in SWEEP_FIGURES]
            continue
        out += [paths.figure(n, f) for f in experiment_figures(EXPERIMENTS[n])]
    return out


def report_names(names):
    """The reproduction report's pages, in order: each experiment; a sweep's members, then
    the sweep."""
    out = []
    for n in names:
        out += [*SWEEPS[n], n] if n in SWEEPS else [n]
    return out


# --- both reports: Snakemake's (--report, report() flags) and lmcpipe's pages (pages.smk) ---
def figure_caption(wildcards):
    """The registry's one-sentence caption (workflow/report/figure.rst shows it)."""
    return FIGURES[wildcards.figure].caption


def reported_figure(pattern, subject):
    """A figure's PNG in Snakemake's report, under its paper, one subcategory per subject."""
    return report(pattern, caption="../report/figure.rst",
                  category=lambda w: f"Paper {FIGURES[w.figure].paper}", subcategory=subject,
                  labels={"figure": "{figure}", "of": subject})


def page_tables(exp):
    """The tables a report page reads: paper A's and the papers B/C ones switched on."""
    return [paths.table(exp.name, t) for t in [*paths.TABLES, *enabled_tables(exp)]]


def figure_pngs(pdfs):
    return [paths.figure_png(f) for f in pdfs]


REPORTED_TABLES = ("summary", "table2")  # the tables a reader of Snakemake's report wants


def reported_table(table):
    pattern = paths.fill(paths.TABLE, table=table)
    if table not in REPORTED_TABLES:
        return pattern
    return report(pattern, caption="../report/table.rst", category="Tables",
                  subcategory="{exp}", labels={"table": table, "of": "{exp}"})


def sweep_values(name):
    """{member: {swept key: value}} of a sweep, values as the members train with (iterations)."""
    return {m: {key: getattr(EXPERIMENTS[m].train, key) for key in keys}
            for m, keys in SWEEPS[name].items()}


def table_json(exp):
    """The experiment's JSON as a param of a table stage, ``threads`` neutralised: it sets how
    fast jobs run, not what they compute, so editing it reruns no table (and no figure)."""
    return to_json(dataclasses.replace(exp, threads=1))


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
    return [f for f, tables in ANALYSIS_FIGURES.items() if tables[0] in on]


def figure_tables(wildcards):
    """The tables a papers B/C figure reads: its own, and optional ones that are switched on."""
    exp = exp_of(wildcards)
    first, *optional = ANALYSIS_FIGURES[wildcards.figure]
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


# --- Scheduler resources and job groups (SLURM: profiles/slurm) -------------------------------
# Portable facts come from the experiment's `resources:` section (defaults filled in by
# validation); site facts (how to ask for a GPU, its model) from `cluster:`, which the profile sets.
def resources_of(wildcards):
    return config["experiments"][wildcards.exp]["resources"]


def wants_gpu(wildcards):
    res = resources_of(wildcards)
    return res["gpu"] or res["require_gpu"]


def job_threads(wildcards):
    """Threads of a training or interpolation job (`threads:` of the experiment)."""
    return _serial_if_gpu(wildcards, exp_of(wildcards).threads)


def aux_threads(wildcards):
    """Threads of the small jobs that share a job group with training (init, masks)."""
    return _serial_if_gpu(wildcards, 1)


def _serial_if_gpu(wildcards, threads):
    """On a cluster, every grouped job of a GPU experiment takes all --cores, so that a job
    group runs its jobs one after another on its one GPU: Snakemake adds up the GPUs of jobs it
    would run side by side (and the remote job that runs a group does not see --resources
    limits). Locally, GPU jobs run side by side, one per GPU slot (lmcpipe.slots), as many as
    `--resources gpu=N` lets Snakemake start."""
    return max(threads, workflow.cores) if wants_gpu(wildcards) and _batch_jobs() else threads


def _batch_jobs():
    """Whether jobs run as cluster batch jobs: submitted by a non-local executor (SLURM), or a
    group's jobs run inside one on a node (remote mode). A dry run counts too: Snakemake forms
    job groups in dry runs as it does on a cluster (Rule.group), so a dry run through the SLURM
    profile shows what sbatch would get; a local dry run shows GPU jobs with all cores."""
    return workflow.non_local_exec_or_dryrun or workflow.remote_exec


def gpu_of(wildcards):
    """Resource gpu. Locally, 1 for each training/interpolation job of a GPU experiment, so
    that `--resources gpu=N` bounds how many run at once. On a cluster, sbatch --gpus=[model:]1
    when the site asks for GPUs with --gpus; with --gres, resource gres asks instead (never
    both: the SLURM plugin refuses a job that has both)."""
    if not wants_gpu(wildcards):
        return 0
    return int(not _batch_jobs() or config["cluster"]["gpu_flag"] == "gpus")


def aux_gpu_of(wildcards):
    """Resource gpu of the small CPU jobs of a GPU experiment (init, masks): none locally, so
    they run beside the GPU jobs on the remaining cores; on a cluster what the GPU jobs of
    their job group ask (a batch job asks for the most of any job in it)."""
    return gpu_of(wildcards) if _batch_jobs() else 0


def gpu_model_of(wildcards):
    return config["cluster"]["gpu_model"] if gpu_of(wildcards) else ""


def gres_of(wildcards):
    """Resource gres (sbatch --gres=gpu:[model:]1) when the site asks for GPUs with --gres."""
    if not wants_gpu(wildcards) or config["cluster"]["gpu_flag"] != "gres":
        return ""
    model = config["cluster"]["gpu_model"]
    return f"gpu:{model}:1" if model else "gpu:1"


def stack_of(wildcards):
    """--stack of a cohort job (0: the device's default). A resource, not a param: like the
    device, it changes float rounding only, and changing it reruns nothing."""
    return resources_of(wildcards)["stack"]


def device_of(wildcards):
    """--device of train/interpolate: cuda (fail without a GPU) or auto (CUDA, else the CPU).

    A resource, not a param: choosing the device does not rerun finished jobs."""
    return "cuda" if resources_of(wildcards)["require_gpu"] else "auto"


# Slots and numerics of a job with --device (lmcpipe.devices): resources, not params, so that
# changing them reruns nothing.
def jobs_per_gpu_of(wildcards):
    return resources_of(wildcards)["jobs_per_gpu"]


def cpu_slots_of(wildcards):
    return resources_of(wildcards)["cpu_slots"]


def deterministic_of(wildcards):
    return "true" if resources_of(wildcards)["deterministic"] else "false"


def compile_of(wildcards):
    """--compile of a training job: eager or compiled whole (lmcpipe.training.step)."""
    return resources_of(wildcards)["compile"]


def group_of(wildcards):
    """Job group: on a cluster, one batch job per (experiment, seed, k, level) runs that level's
    training runs other than the chain's, and its interpolations. Groups are ignored by local
    runs."""
    k = wildcards.get("k", "0")
    level = wildcards.get("level", "0")
    return f"{wildcards.exp}_s{wildcards.seed}_k{k}_L{level}"


# The chain's own jobs: one batch job per chain step, so that the next level's mask waits for
# the chain's run at this level alone, not for the level's other runs (group_of).
CHAIN_PRIORITY = 1


def chain_group(wildcards):
    """Job group of a chain step: level L's chain run with level L + 1's pruning that reads it
    (W_0 and the dense run at k0/L0, W_k at k<k>/L0). Also what probes from level L need."""
    k = wildcards.get("k", "0")
    level = wildcards.get("level", "0")
    return f"{wildcards.exp}_s{wildcards.seed}_k{k}_L{level}_chain"


def prune_group(wildcards):
    """Level L's pruning goes with level L - 1's chain run (chain_group), which it reads."""
    level = int(wildcards.level) - 1
    return f"{wildcards.exp}_s{wildcards.seed}_k{wildcards.k}_L{level}_chain"


# The one definition of what a compute job (training, pruning, interpolation, analysis) asks the
# scheduler for: `resources: **JOB_RESOURCES, **job_costs(...)` in each such rule (runtime and
# memory from its work: costs.smk). Table and figure rules are local rules and ask for nothing.
JOB_RESOURCES = dict(gpu=gpu_of, gpu_model=gpu_model_of, gres=gres_of, device=device_of,
                     jobs_per_gpu=jobs_per_gpu_of, cpu_slots=cpu_slots_of,
                     deterministic=deterministic_of)
# The small CPU jobs of a job group (init, masks): `resources: **AUX_RESOURCES`.
AUX_RESOURCES = {**JOB_RESOURCES, "gpu": aux_gpu_of}


include: "costs.smk"
