"""Draw a figure by name: the registry's function, in the project's style, with what it rests on.

``render`` is what the ``figure`` stage (``lmcpipe.stages.figure``) and the tests call; it looks
the name up in ``lmcpipe.figures.registry`` and imports the drawing module only then, so one
figure job loads the code of its own family. ``annotate`` adds what every figure of an
experiment must say about its runs, whichever module drew it.
"""

from __future__ import annotations

from pathlib import Path

import seaborn as sns
from matplotlib.figure import Figure

from lmcpipe import csvfiles, paths
from lmcpipe.figures import registry

DENSITY_TEXT = {"all_weights": "all conv/linear weights", "prunable_weights": "prunable weights"}


def render(name: str, tables_dir: Path, threshold: float = 0.02) -> Figure:
    """Build figure ``name`` in the project's style, then say what it rests on (``annotate``)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig = registry.FIGURES[name].function()(Path(tables_dir), threshold)
    annotate(fig, Path(tables_dir) / paths.table_file("runs"))
    return fig


def annotate(fig: Figure, runs_csv: Path) -> None:
    """What every figure of an experiment says about its runs (read from ``runs.csv``):

    * a "weights remaining (%)" axis names the set the density is over (``density_of``);
    * runs that ended at chance error (``at_chance``) are counted in a footnote, since their
      accuracy is noise and their pairs look stable.
    """
    if not runs_csv.exists():  # a sweep's figures: its members' tables say it
        return
    runs = csvfiles.read(runs_csv)
    bases = set(runs["density_of"]) if "density_of" in runs else set()
    if len(bases) == 1:
        basis = DENSITY_TEXT.get(bases.pop())
        for ax in fig.axes:
            label = ax.get_xlabel()
            if basis and "weights remaining" in label and "(%)" in label:
                ax.set_xlabel(label.replace("(%)", f"(% of {basis})"))
    if "at_chance" in runs and runs["at_chance"].astype(bool).any():
        n = int(runs["at_chance"].astype(bool).sum())
        fig.text(0.01, 0.005, f"Note: {n} of {len(runs)} runs ended at chance error "
                 "(at_chance in runs.csv); they are included", fontsize=7, color="firebrick",
                 ha="left", va="bottom")
