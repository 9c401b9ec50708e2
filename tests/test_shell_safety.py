"""What reaches a job's shell: experiment names are refused unless safe, every value is quoted.

A rule's shell line is run by bash, so a value spliced into it unquoted is code: an experiment
named ``x;rm -rf y`` once ran ``rm``. Names are now one pattern (``$defs/name`` of the schema),
and every placeholder of every rule is written ``{...:q}`` (Snakemake quotes it with
``shlex.quote``), so a value that may hold spaces or quotes, such as ``data_root``, arrives whole.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from lmcpipe import paths, provenance
from lmcpipe.config import ConfigError, validate
from tests.helpers import write_dataset
from tests.test_workflow import snakemake

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "model": "lenet_300_100",
    "dataset": "mnist",  # no system copy (Debian ships Fashion-MNIST only): only data_root has it
    "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 20, "steps": 10,
              "eval_steps": [0, 10], "checkpoint_every": 0},
    "replicates": {"inits": [0], "orders": [0]},
}


def shell_lines() -> list[tuple[str, str]]:
    """(file, text) of every string line of every ``shell:`` block of the workflow's rules."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        in_shell = False
        for line in smk.read_text().splitlines():
            stripped = line.strip()
            if stripped == "shell:":
                in_shell = True
            elif in_shell and stripped.startswith('"'):
                found.append((smk.name, stripped))
            else:
                in_shell = False
    return found


def test_every_placeholder_of_every_shell_line_is_quoted():
    lines = shell_lines()
    assert len(lines) > 40  # the parser found the rules' shell lines
    placeholders = [(f, m.group(0)) for f, text in lines
                    for m in re.finditer(r"(?<!\{)\{[^{}]+\}(?!\})", text)]
    assert len(placeholders) > 80
    unquoted = [(f, p) for f, p in placeholders if not p.endswith(":q}")]
    assert unquoted == []


@pytest.mark.parametrize("name", ["x;rm -rf y", "a/b", ".hidden", "-flag", "sp ace", "q'uote",
                                  "$(touch z)", ""])
def test_unsafe_experiment_names_are_refused_naming_the_key(name):
    config = {"experiments": {name: yaml.safe_load(yaml.safe_dump(TINY))}}
    with pytest.raises(ConfigError, match=r"^config key experiments: .* is not allowed: letters"):
        validate(config)


def test_safe_names_validate():
    config = {"experiments": {n: yaml.safe_load(yaml.safe_dump(TINY))
                              for n in ("a.b-c_1", "_x", "Resnet20.v2")}}
    assert set(validate(config)) == {"a.b-c_1", "_x", "Resnet20.v2"}


@pytest.mark.slow
def test_a_hostile_name_runs_nothing(tmp_path):
    """The injection of issue 21, run for real (not a dry run): refused in one line before any
    job, and the files its ``rm -rf y`` would have deleted are still there."""
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "keep.txt").write_text("still here")
    config = {"data_root": str(tmp_path / "data"), "experiments": {"x;rm -rf y": TINY}}
    done = snakemake(tmp_path, config, env={"LMCPIPE_OFFLINE": "1"})
    assert done.returncode != 0
    assert "config key experiments: 'x;rm -rf y' is not allowed" in done.stderr
    assert (tmp_path / "y" / "keep.txt").read_text() == "still here"
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_a_data_root_with_spaces_and_quotes_reaches_its_stages_intact(tmp_path):
    """``data_root`` is free text: a folder named ``my data's "copy"`` goes through the JSON
    --hparams of init and the cohort job, and through the download check, unchanged."""
    root = tmp_path / """my data's "copy" $HOME"""
    write_dataset(root / "mnist")
    config = {"data_root": str(root), "all": ["tiny"], "experiments": {"tiny": TINY}}
    target = f"{paths.dense('tiny', 0)}/{paths.MODEL}"
    done = snakemake(tmp_path, config, target, env={"LMCPIPE_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    model = tmp_path / target
    assert model.exists()
    record = provenance.read_record(model)
    assert record is not None and record["stage"] == "cohort"
    assert str(root / "mnist") in record["data_source"]  # MNIST exists only there
