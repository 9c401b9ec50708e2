# What each compute job asks a cluster for: runtime and memory from its work (lmcpipe.costs).
#
# The resources of every compute rule hold `**job_costs(job, kind, group)` next to
# JOB_RESOURCES (or AUX_RESOURCES), `group` being the function its group directive names. On
# SLURM a job group is one batch job asking for the sum of its jobs' runtimes, so the site's
# walltime cap (cluster.max_runtime_min) binds the group: each job's runtime is its share of its
# group's (lmcpipe.costs.share), computed from every job of the experiment that may join that
# group. A job's memory is its own (the group asks for the most any job needs at once).

import math

from lmcpipe import costs

COSTS = costs.Costs.of_cluster(config["cluster"])
_GROUP_FUNCTIONS = {}  # (job, kind) -> the rule's group function, registered by job_costs
_WARNED_RESUME = set()  # experiments whose resume problems were reported


class _Where(dict):
    """Wildcards of a job the plan knows of but Snakemake has not made (yet): what the group,
    cohort and pair functions read (attributes and .get)."""

    __getattr__ = dict.__getitem__


def job_costs(job, kind="", group=None):
    """Resources `runtime` and `mem_mb` of the rule of a kind of compute job (init, rewind,
    cohort, interpolate, prune, successive, curvature, perturb_start, oneshot_mask; ``kind``:
    the cohort kind), in the job group that ``group`` (the rule's group function) names."""
    _GROUP_FUNCTIONS[job, kind] = group
    return {"runtime": lambda w, attempt: _runtime(job, kind, w, attempt),
            "mem_mb": lambda w: _mem_mb(job, kind, w)}


def _device(job, wildcards):
    """The cost table's device class of a job: a GPU experiment's compute jobs run on the
    site's GPU (cluster.gpu_model), the rest on the CPU."""
    gpu = wants_gpu(wildcards) and job not in ("init", "prune", "perturb_start", "oneshot_mask")
    return costs.device_class(gpu, config["cluster"]["gpu_model"], COSTS.devices())


_WORK = {}  # (experiment, job key) -> Work: runtime and memory both ask, per job


def _work(job, kind, wildcards):
    """The work of one job (lmcpipe.costs.Work)."""
    key = (wildcards.exp, *_key(job, kind, wildcards))
    if key not in _WORK:
        _WORK[key] = _job_work(job, kind, wildcards)
    return _WORK[key]


def _job_work(job, kind, wildcards):
    exp = exp_of(wildcards)
    hp = exp.train
    if job == "rewind":
        return costs.training_work(hp, 1, 0, stop_step=int(wildcards.k), record=False)
    if job == "cohort":
        _, start, members = _cohort_of(wildcards, kind)
        refs = {r for m in members for r in m["references"]}
        return costs.training_work(hp, len(members), start, references=len(refs))
    if job == "interpolate":
        return costs.interpolation_work(hp, exp.interp, len(_cohort_pairs(wildcards, kind)))
    if job == "successive":
        return costs.interpolation_work(hp, exp.interp, 1)
    if job == "curvature":
        return costs.curvature_work(hp, exp.analyses)
    return costs.setup_work()


def _estimate(job, kind, wildcards):
    """Minutes of a job's first attempt before any cap: the experiment's runtime_min when it
    sets one, else the estimate from its work."""
    fixed = resources_of(wildcards)["runtime_min"]
    if fixed:
        return float(fixed)
    return COSTS.minutes(exp_of(wildcards).train, _device(job, wildcards),
                         _work(job, kind, wildcards))


def _key(job, kind, wildcards):
    return (job, kind, *_where(wildcards))


def _experiment_jobs(exp):
    """(job, kind, wildcards) of every compute job the experiment may have."""
    jobs = []
    for s in exp.inits:
        jobs.append(("init", "", _Where(exp=exp.name, seed=s, k=0, level=0)))
        for k in sorted((set(exp.fork_steps) | set(exp.prune.rewind_steps)) - {0}):
            jobs.append(("rewind", "", _Where(exp=exp.name, seed=s, k=k, level=0)))
    for s, k, level, kind in plan.cohorts(exp):
        jobs.append(("cohort", kind, _Where(exp=exp.name, seed=s, k=k, level=level)))
    for kind in paths.PROBES:
        where = sorted({(p.seed, p.k, p.level) for p in plan.probes(exp, kind)})
        setup = "perturb_start" if kind == "perturb" else "oneshot_mask"
        for s, k, level in where:
            w = _Where(exp=exp.name, seed=s, k=k, level=level)
            jobs += [("cohort", kind, w), (setup, "", w)]
    for job, kind, w in list(jobs):
        if job == "cohort" and _cohort_pairs(w, kind):
            jobs.append(("interpolate", kind, w))
    for s, k in plan.chains(exp):
        for level in range(exp.prune.levels + 1):
            w = _Where(exp=exp.name, seed=s, k=k, level=level)
            jobs += [("prune", "", w)] if level else []
            jobs += [("successive", "", w)] if exp.analyses.successive and level < exp.prune.levels else []
            jobs += [("curvature", "", w)] if exp.analyses.curvature else []
    return jobs


@functools.cache
def _groups(name):
    """{group: {job key: estimate}} of every compute job of experiment ``name``."""
    exp = EXPERIMENTS[name]
    out = {}
    for job, kind, w in _experiment_jobs(exp):
        group = _GROUP_FUNCTIONS.get((job, kind))
        if group is None:  # a kind of job no rule of this workflow runs
            continue
        out.setdefault(group(w), {})[_key(job, kind, w)] = _estimate(job, kind, w)
    _report_resume(exp, out)
    return out


@functools.cache
def _allocation(name, group, attempt):
    estimates = _groups(name)[group]
    return dict(zip(estimates, costs.share(list(estimates.values()), attempt,
                                           config["cluster"]["max_runtime_min"])))


def _runtime(job, kind, wildcards, attempt):
    """Minutes a job asks for on attempt ``attempt``: its share of its group's request."""
    group = _GROUP_FUNCTIONS[job, kind](wildcards)
    allocation = _allocation(wildcards.exp, group, attempt)
    key = _key(job, kind, wildcards)
    if key in allocation:
        return allocation[key]
    # a job the enumeration above does not know of: alone against the cap (and reported, so
    # that the enumeration gets fixed)
    logger.warning(f"lmcpipe: {job} job {key} is missing from its group's runtime plan")
    cap = config["cluster"]["max_runtime_min"]
    asked = attempt * math.ceil(_estimate(job, kind, wildcards))
    return min(asked, cap) if cap else asked


def _mem_mb(job, kind, wildcards):
    res = resources_of(wildcards)
    if res["mem_mb"]:
        return res["mem_mb"]
    device = _device(job, wildcards)
    stack = (res["stack"] or 1) if device == "cpu" else 1
    return COSTS.mem_mb(exp_of(wildcards).train, device, _work(job, kind, wildcards), stack)


def _report_resume(exp, groups):
    """Warn once per experiment when a training job longer than the cap may never finish:
    no or rare checkpoints, or more attempts than the profile's retries allow."""
    cap = config["cluster"]["max_runtime_min"]
    if not cap or workflow.remote_exec or exp.name in _WARNED_RESUME:
        return
    _WARNED_RESUME.add(exp.name)
    retries = workflow.execution_settings.retries if workflow.execution_settings else 0
    longest = max(((e, key) for g in groups.values() for key, e in g.items()
                   if key[0] in ("cohort", "rewind")), default=None)
    if longest is None or longest[0] <= cap:
        return
    estimate, (job, kind, seed, k, level) = longest
    w = _Where(exp=exp.name, seed=seed, k=k, level=level)
    device = _device(job, w)
    s, _ = COSTS.step_seconds(exp.train.model, exp.train.precision, device,
                              exp.train.batch_size, exp.train.image_size, exp.train.dataset)
    members = len(_cohort_of(w, kind)[2]) if job == "cohort" else 1
    stack = members if device != "cpu" else (resources_of(w)["stack"] or 1)
    between = exp.train.checkpoint_every * s * min(stack, members) * COSTS.margin / 60
    for line in costs.resume_problems(f"experiments.{exp.name}", exp.train, estimate, cap,
                                      retries, between):
        logger.warning(line)
