"""The one place that knows where artifacts live.

A path names what produced it: experiment, init seed, rewind step k, variant (``imp``,
``randprune``, ``reinit``, or ``restart``: paper A's Fig 4 control, dense copies trained from W_k
for the full T steps with schedule and data order restarted), pruning level, data order and copy.
Snakemake rules use the patterns, Python code uses the functions; both come from here.

Two aliases avoid training the same thing twice:

* copy 1 of the chain's data order at any level is the IMP *retrain* run of that level
  (``.../retrain``), whose weights also feed the next level's pruning;
* at level 0 and k = 0 that retrain run is the dense run itself (``s{seed}/dense``).
"""

from __future__ import annotations

RESULTS = "results"
VARIANTS = ("imp", "randprune", "reinit", "restart")

# --- patterns (Snakemake wildcards) ---------------------------------------------------------
INIT = RESULTS + "/{exp}/s{seed}/rewind/k0.pt"
REWIND = RESULTS + "/{exp}/s{seed}/rewind/k{k}.pt"
DENSE = RESULTS + "/{exp}/s{seed}/dense"
LEVEL = RESULTS + "/{exp}/s{seed}/k{k}/{variant}/L{level}"
MASK = LEVEL + "/mask.pt"
RETRAIN = LEVEL + "/retrain"
FORK = LEVEL + "/d{order}c{cp}"
PATH = LEVEL + "/d{order}/path.csv"
TABLES_ROOT = RESULTS + "/tables"
TABLES_DIR = TABLES_ROOT + "/{exp}"  # an experiment's tables, the directory figure jobs read
TABLE_FILE = "{table}.csv"  # a tidy table, in its tables directory
TABLE = TABLES_DIR + "/" + TABLE_FILE
# papers B and C: analyses of one IMP chain (init seed x rewind step k)
CHAIN = RESULTS + "/{exp}/s{seed}/k{k}/chain"
SUCCESSIVE = CHAIN + "/successive_L{level}.csv"  # path between levels L and L + 1
ROUNDS = CHAIN + "/rounds"  # directory of the chain's angles/thresholds/... tables
ROUND_TABLE = ROUNDS + "/" + TABLE_FILE
CURVATURE = CHAIN + "/curvature_L{level}.csv"
# paper C probes: extra runs from level L of a chain; arm = "c<scale>" (perturb) or
# "<method><j>" (oneshot: j IMP steps' worth pruned at once by magnitude or at random)
PROBES = ("perturb", "oneshot")
PROBE = RESULTS + "/{exp}/s{seed}/k{k}/{probe}/L{level}/{arm}"
START = "start.pt"  # a perturb probe's perturbed start point
MASK_FILE = "mask.pt"
PATH_FILE = "path.csv"
PROBE_START = PROBE + "/" + START
PROBE_MASK = PROBE + "/" + MASK_FILE
PROBE_PATH = PROBE + "/" + PATH_FILE
PROBE_SETUP = {"perturb": START, "oneshot": MASK_FILE}  # what a probe's setup job writes
ARM = r"c[0-9.e+-]+|(magnitude|random)\d+"  # the arms perturb_arm and oneshot_arm write
FIGURE = RESULTS + "/figures/{figure}_{exp}.pdf"
FIGURE_PNG = RESULTS + "/figures/{figure}_{exp}.png"  # the same figure, inline in the report
# the reproduction report (lmcpipe.report): static pages, one per experiment or sweep
REPORT_DIR = RESULTS + "/report"
REPORT_INDEX = REPORT_DIR + "/index.html"
REPORT_PAGE = REPORT_DIR + "/{exp}.html"
REPORT_CLAIMS = REPORT_DIR + "/{exp}_claims.csv"  # the page's judged claims, a tidy table
REPORT_SWEEP_PAGE = REPORT_DIR + "/{sweep}.html"
REPORT_SWEEP_CLAIMS = REPORT_DIR + "/{sweep}_claims.csv"

# --- logs: one per job, under logs/ (never an input; the layout mirrors results/) ------------
LOGS = "logs"
LOG = LOGS + "/{exp}/{name}.log"  # jobs of a whole experiment: tables and figures
SEED_LOG = LOGS + "/{exp}/s{seed}/{name}.log"  # W_0 and the rewind points of an init
CHAIN_LOG = LOGS + "/{exp}/s{seed}/k{k}/chain/{name}.log"  # papers B/C analyses of a chain
PRUNE_LOG = LOGS + "/{exp}/s{seed}/k{k}/imp/L{level}/prune.log"
COHORT_LOG = LOGS + "/{exp}/s{seed}/k{k}/L{level}/{kind}_{stage}.log"
PROBE_LOG = LOGS + "/{exp}/s{seed}/k{k}/{probe}/L{level}/{name}.log"
SWEEP_LOG = LOGS + "/sweeps/{sweep}/{name}.log"
DOWNLOAD_LOG = LOGS + "/download_{dataset}.log"
REPORT_LOG = LOGS + "/report/{name}.log"

MODEL = "model.pt"
METRICS = "metrics.csv"
TABLES = ("runs", "paths", "instability", "curves", "summary", "table2", "provenance")
ROUND_TABLES = ("angles", "thresholds", "histograms", "small_weights")
# experiment table -> analysis switch (AnalysisHParams field) that produces it
ANALYSIS_TABLES = {"successive": "successive", "curvature": "curvature",
                   **{t: "rounds" for t in ROUND_TABLES},
                   "perturb": "perturb_scales", "oneshot": "oneshot_steps"}
# paper B sweeps (one experiment per combination): tables and figures under the sweep's name;
# sweep table -> the members' experiment table it gathers
SWEEP_SOURCES = {"sweep_runs": "runs", "sweep_instability": "instability"}
SWEEP_TABLES = tuple(SWEEP_SOURCES)
SWEEP_TABLES_DIR = TABLES_ROOT + "/{sweep}"
SWEEP_TABLE = SWEEP_TABLES_DIR + "/" + TABLE_FILE
SWEEP_FIGURE = RESULTS + "/figures/{figure}_{sweep}.pdf"
SWEEP_FIGURE_PNG = RESULTS + "/figures/{figure}_{sweep}.png"


class _Keep(dict):
    """Format mapping that leaves the fields it is not given as ``{field}`` (wildcards)."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(pattern: str, **fields: object) -> str:
    """``pattern`` with ``fields`` filled in and every other field kept as a wildcard.

    ``fill(MASK, variant="imp")`` is the IMP mask pattern of a rule; ``fill(LOG, name="x")``
    a log pattern. (``str.format`` would fail on the fields left out.)"""
    return pattern.format_map(_Keep(fields))


def rewind(exp: str, seed: int, k: int) -> str:
    """W_k of the dense trajectory of init ``seed`` (k = 0: the initialisation)."""
    return REWIND.format(exp=exp, seed=seed, k=k)


def dense(exp: str, seed: int) -> str:
    return DENSE.format(exp=exp, seed=seed)


def level(exp: str, seed: int, k: int, variant: str, level: int) -> str:
    return LEVEL.format(exp=exp, seed=seed, k=k, variant=variant, level=level)


def mask(exp: str, seed: int, k: int, variant: str, lvl: int) -> str | None:
    """Mask file of a subnetwork; None for the dense level 0. Reinit shares the IMP mask."""
    if lvl == 0:
        return None
    if variant == "reinit":
        variant = "imp"
    return MASK.format(exp=exp, seed=seed, k=k, variant=variant, level=lvl)


def run(exp: str, seed: int, k: int, variant: str, lvl: int, order: int, copy: int,
        chain_order: int) -> str:
    """Directory holding ``model.pt`` and ``metrics.csv`` of one trained copy."""
    if (order, copy) == (chain_order, 1):
        if variant == "imp" and lvl == 0 and k == 0:
            return dense(exp, seed)
        return level(exp, seed, k, variant, lvl) + "/retrain"
    return FORK.format(exp=exp, seed=seed, k=k, variant=variant, level=lvl, order=order, cp=copy)


def chain_run(exp: str, seed: int, k: int, lvl: int, chain_order: int) -> str:
    """Directory of the trained IMP network of level ``lvl`` of the chain (seed, k).

    Level 0 is the dense network for every k: rewinding applies from level 1 on (as in open_lth).
    """
    if lvl == 0:
        return dense(exp, seed)
    return run(exp, seed, k, "imp", lvl, chain_order, 1, chain_order)


def chain_model(exp: str, seed: int, k: int, lvl: int, chain_order: int) -> str:
    """Trained IMP network of level ``lvl`` whose magnitudes give level ``lvl + 1``'s mask."""
    return chain_run(exp, seed, k, lvl, chain_order) + "/" + MODEL


def path(exp: str, seed: int, k: int, variant: str, lvl: int, order: int) -> str:
    return PATH.format(exp=exp, seed=seed, k=k, variant=variant, level=lvl, order=order)


def table_file(name: str) -> str:
    """File name of the table ``name`` inside a tables directory (``runs`` -> ``runs.csv``)."""
    return TABLE_FILE.format(table=name)


def tables_dir(exp: str) -> str:
    return TABLES_DIR.format(exp=exp)


def table(exp: str, name: str) -> str:
    return TABLE.format(exp=exp, table=name)


def sweep_tables_dir(sweep: str) -> str:
    return SWEEP_TABLES_DIR.format(sweep=sweep)


def sweep_table(sweep: str, name: str) -> str:
    return SWEEP_TABLE.format(sweep=sweep, table=name)


def figure(exp: str, name: str) -> str:
    return FIGURE.format(exp=exp, figure=name)


def sweep_figure(sweep: str, name: str) -> str:
    return SWEEP_FIGURE.format(sweep=sweep, figure=name)


def figure_png(pdf: str) -> str:
    """The PNG rendered beside a figure's PDF (the report shows it inline)."""
    return pdf.removesuffix(".pdf") + ".png"


def report_page(name: str) -> str:
    """Report page of an experiment or a sweep (one directory, one namespace of names)."""
    return REPORT_PAGE.format(exp=name)


def report_claims(name: str) -> str:
    return REPORT_CLAIMS.format(exp=name)


def successive(exp: str, seed: int, k: int, lvl: int) -> str:
    return SUCCESSIVE.format(exp=exp, seed=seed, k=k, level=lvl)


def rounds_dir(exp: str, seed: int, k: int) -> str:
    return ROUNDS.format(exp=exp, seed=seed, k=k)


def rounds_table(exp: str, seed: int, k: int, name: str) -> str:
    return ROUND_TABLE.format(exp=exp, seed=seed, k=k, table=name)


def curvature(exp: str, seed: int, k: int, lvl: int) -> str:
    return CURVATURE.format(exp=exp, seed=seed, k=k, level=lvl)


def perturb_arm(scale: float) -> str:
    return f"c{scale:g}"


def oneshot_arm(method: str, steps: int) -> str:
    return f"{method}{steps}"


def probe(exp: str, seed: int, k: int, kind: str, lvl: int, arm: str) -> str:
    """Directory of one probe run (start/mask, model.pt, metrics.csv, path.csv)."""
    return PROBE.format(exp=exp, seed=seed, k=k, probe=kind, level=lvl, arm=arm)


# --- files of unfinished work, next to a run's model.pt (never inputs of another job) --------
def resume_file(model_out: str) -> str:
    """Resume checkpoint of a run in progress (model, optimiser, step, metrics, RNG state)."""
    return model_out + ".resume"


def partial_file(model_out: str) -> str:
    """A cohort member that finished training while its cohort has not: the weights and
    metrics its model.pt and metrics.csv get once the whole cohort is done."""
    return model_out + ".partial"


def stack_resume_file(first_model_out: str) -> str:
    """Resume checkpoint of a stacked chunk of cohort members, next to its first member's."""
    return first_model_out + ".stack.resume"


# --- provenance: what produced an artifact (a sidecar, never an input of another job) --------
RECORD = ".run.json"


def record_file(artifact: str) -> str:
    """Provenance record of an artifact (``lmcpipe.provenance``): its path with the suffix
    replaced, ``.../dense/model.pt`` -> ``.../dense/model.run.json``, ``d0/path.csv`` ->
    ``d0/path.run.json``, so it sits beside what it describes and names it."""
    return _beside(artifact, RECORD)


def _beside(artifact: str, suffix: str) -> str:
    """``artifact``'s path with its extension replaced by ``suffix`` (a sidecar file's)."""
    directory, slash, name = str(artifact).rpartition("/")
    stem, dot, _ = name.rpartition(".")
    return directory + slash + (stem if dot and stem else name) + suffix


# --- check records: a CSV artifact's checksum, rows and columns (``lmcpipe.csvfiles``) --------
CHECK = ".check.json"


def check_file(table: str) -> str:
    """Check record of a CSV artifact, beside it: ``.../dense/metrics.csv`` ->
    ``.../dense/metrics.check.json``, ``results/tables/x/runs.csv`` -> ``.../runs.check.json``."""
    return _beside(table, CHECK)
