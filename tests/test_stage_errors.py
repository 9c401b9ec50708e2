"""Nothing a user gets wrong ends in a traceback (issue 21): a bad JSON flag of any stage, a bad
value inside one, a missing flag and a damaged or missing dataset each print one line on stderr
naming the stage, the flag (and the key) or the file, and exit non-zero — a bad flag before any
data is read. The stages run as the rules run them: ``python -m lmcpipe <stage>`` subprocesses.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from lmcpipe import cli, hparams
from lmcpipe.errors import InputError
from lmcpipe.hparams import Experiment, InterpHParams, JsonFlag, TrainHParams, conform, to_json
from lmcpipe.training.cohort import Member
from tests.helpers import file_name, tiny_hparams, write_dataset

NOWHERE = "no-such-data-root"  # relative to each run's cwd: a data load would create it
HP = json.loads(to_json(tiny_hparams(NOWHERE)))  # as JSON decodes it: lists, not tuples
INTERP = json.loads(to_json(InterpHParams()))
MEMBER = {"order": 0, "copy": 1, "model_out": "run/model.pt", "metrics_out": "run/metrics.csv"}
PAIR = {"copy1": "a/model.pt", "copy2": "b/model.pt", "out": "a/path.csv"}
EXPERIMENT = json.loads(to_json(Experiment("x", tiny_hparams(NOWHERE), hparams.PruneHParams(),
                                           InterpHParams(), (0,), (0,), ())))


def hp_with(**changes) -> str:
    """HP as JSON with keys changed (a value of None removes the key)."""
    return json.dumps({k: v for k, v in {**HP, **changes}.items() if v is not None})


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


# Valid arguments of every stage with a JSON flag (its required flags and its JSON flags); each
# case below replaces one value.
REQUIRED = {
    "init": ["--hparams", json.dumps(HP), "--seed", "0", "--out", "init.pt"],
    "train": ["--hparams", json.dumps(HP), "--seed", "0", "--start", "init.pt", "--order", "0",
              "--model-out", "run/model.pt"],
    "cohort": ["--hparams", json.dumps(HP), "--seed", "0", "--start-step", "0", "--level", "0",
               "--members", json.dumps([MEMBER])],
    "curvature": ["--hparams", json.dumps(HP), "--analyses", to_json(hparams.AnalysisHParams()),
                  "--model", "m.pt", "--fraction", "0.2", "--seed", "0", "--k", "0", "--level",
                  "1", "--out", "c.csv"],
    "interpolate": ["--hparams", json.dumps(HP), "--interp", json.dumps(INTERP), "--copy1",
                    "a.pt", "--copy2", "b.pt", "--out", "p.csv"],
    "interpolate-pairs": ["--hparams", json.dumps(HP), "--interp", json.dumps(INTERP),
                          "--pairs", json.dumps([PAIR])],
    "aggregate": ["--experiment", json.dumps(EXPERIMENT), "--out-dir", "tables"],
    "aggregate-analysis": ["--experiment", json.dumps(EXPERIMENT), "--table", "angles",
                           "--out", "t.csv"],
    "report": ["--experiment", json.dumps(EXPERIMENT), "--members", '["a", "b"]', "--tables",
               "tables", "--out", "r.html", "--claims-out", "c.csv"],
    "sweep-table": ["--name", "s", "--members", '{"a": {"lr": 0.1}}', "--settings",
                    '{"a": {"lr": 0.1}}', "--out-dir", "tables"],
}

# (stage, flag, bad value, what the line must say): malformed JSON for every stage's JSON flag,
# then missing keys, wrong types and bad members for the training and interpolation stages
CASES = [
    ("init", "--hparams", "{", "not valid JSON"),
    ("train", "--hparams", '{"lr": 0.1,}', "not valid JSON"),
    ("cohort", "--members", "[{", "not valid JSON"),
    ("curvature", "--analyses", "{x", "not valid JSON"),
    ("interpolate", "--interp", "nope", "not valid JSON"),
    ("interpolate-pairs", "--pairs", "[{]", "not valid JSON"),
    ("aggregate", "--experiment", "{", "not valid JSON"),
    ("aggregate-analysis", "--experiment", "", "not valid JSON"),
    ("report", "--members", "[", "not valid JSON"),
    ("sweep-table", "--settings", "{", "not valid JSON"),
    ("train", "--hparams", hp_with(lr=None), "missing key 'lr'"),
    ("train", "--hparams", hp_with(lr="0.1"),
     """key 'lr': expected a number, got the string "0.1\""""),
    ("train", "--hparams", hp_with(lrate=0.1), "unknown key 'lrate' (did you mean 'lr'?)"),
    ("cohort", "--hparams", hp_with(batch_size=1.5),
     "key 'batch_size': expected an integer, got 1.5"),
    ("cohort", "--members", json.dumps([without(MEMBER, "model_out")]),
     "item 0: missing key 'model_out'"),
    ("interpolate-pairs", "--pairs", json.dumps([PAIR, without(PAIR, "out")]),
     "item 1: missing key 'out'"),
    ("interpolate-pairs", "--interp", json.dumps({**INTERP, "alphas": [30]}),
     "key 'alphas': expected an integer, got a list"),
]


def lmcpipe(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmcpipe", *argv], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env={**os.environ,
                                                                 "LMCPIPE_OFFLINE": "1"})


def the_line(done: subprocess.CompletedProcess, stage: str) -> str:
    """The one line a failed stage printed (a failure, one non-empty stderr line, no traceback,
    starting with the stage)."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"lmcpipe {stage}: ")
    return lines[0]


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[:i + 1], value, *argv[i + 2:]]


@pytest.mark.parametrize(("stage", "flag", "value", "words"), CASES,
                         ids=[f"{c[0]}{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_a_bad_json_flag_is_one_line_before_any_data(tmp_path, stage, flag, value, words):
    done = lmcpipe(stage, *with_flag(REQUIRED[stage], flag, value), cwd=tmp_path)
    line = the_line(done, stage)
    assert f"argument {flag}: " in line and words in line
    assert list(tmp_path.iterdir()) == []  # no data read (no cache), nothing written


def test_every_stage_json_flag_is_checked_and_tested():
    """Each flag a stage's help calls JSON is a JsonFlag, and CASES fail each such stage."""
    flagged = {}
    for stage in cli.STAGES:
        parser = cli.Parser(prog=stage)
        importlib.import_module(f"lmcpipe.{cli.module(stage)}").add_arguments(parser)
        json_flags = {a.option_strings[0] for a in parser._actions if "JSON" in (a.help or "")}
        assert all(isinstance(a, JsonFlag) for a in parser._actions
                   if a.option_strings and a.option_strings[0] in json_flags), stage
        if json_flags:
            flagged[stage] = json_flags
    assert set(flagged) == set(REQUIRED) == {c[0] for c in CASES}
    for stage, flags in flagged.items():
        assert flags <= set(REQUIRED[stage])


def test_a_missing_flag_is_one_line(tmp_path):
    done = lmcpipe("aggregate", "--experiment", json.dumps(EXPERIMENT), cwd=tmp_path)
    assert the_line(done, "aggregate") == (
        "lmcpipe aggregate: the following arguments are required: --out-dir")


def test_a_data_error_of_a_training_job_is_one_line_naming_the_file(tmp_path):
    write_dataset(tmp_path / "data" / "fashion_mnist")
    gz = tmp_path / "data" / "fashion_mnist" / file_name("train_x")
    gz.write_bytes(gz.read_bytes()[:200])  # a truncated download
    hp = to_json(tiny_hparams(tmp_path / "data"))
    done = lmcpipe("train", *with_flag(REQUIRED["train"], "--hparams", hp), cwd=tmp_path)
    assert the_line(done, "train").startswith(f"lmcpipe train: {gz}: cannot be read (")
    assert not (tmp_path / "run").exists()


def test_a_dataset_that_cannot_be_downloaded_is_one_line_naming_the_folder(tmp_path):
    done = lmcpipe("download", "--dataset", "imagenet", "--root", "data", cwd=tmp_path)
    assert the_line(done, "download") == (
        "lmcpipe download: dataset 'imagenet' not found: put its train/ and val/ folders "
        "(<class>/<image>) in data/imagenet")


def test_a_file_it_was_given_that_is_missing_is_one_line(tmp_path):
    done = lmcpipe("check-config", "absent.yaml", cwd=tmp_path)
    assert the_line(done, "check-config") == (
        "lmcpipe check-config: absent.yaml: No such file or directory")


# --- the checks themselves (lmcpipe.hparams.conform), in process ---------------------------------
def test_valid_json_builds_what_it_built_before():
    """The JSON strings are Snakemake params: checking them must not change what they build."""
    hp = replace(tiny_hparams("data"), lr=1, milestones=(10, 20), eval_steps=(0, 30),
                 channels_last=True, gamma=0.5)
    text = to_json(hp)
    built = hparams.from_json(TrainHParams, text)
    assert built == hp == hparams._coerce(TrainHParams, json.loads(text))
    assert type(built.lr) is int and to_json(built) == text  # an int stays an int
    exp = Experiment("x", hp, hparams.PruneHParams(levels=3, rewind_steps=(0, 5)),
                     InterpHParams(), (0, 1), (0,), (5,), threads=2, control=True,
                     analyses=hparams.AnalysisHParams(perturb_scales=(0.5, 1)))
    assert hparams.experiment_from_json(to_json(exp)) == exp
    members = hparams.from_json(list[Member], json.dumps([{**MEMBER, "references": ["r.pt"]}]))
    assert members == [Member(0, 1, "run/model.pt", "run/metrics.csv", references=("r.pt",))]


@pytest.mark.parametrize(("kind", "value", "message"), [
    (TrainHParams, {**HP, "batch_size": 2.0}, "key 'batch_size': expected an integer, got 2.0"),
    (TrainHParams, {**HP, "steps": True}, "key 'steps': expected an integer, got true"),
    (TrainHParams, {**HP, "channels_last": 1},
     "key 'channels_last': expected true or false, got 1"),
    (TrainHParams, {**HP, "milestones": [1, "2"]},
     """key 'milestones', item 1: expected an integer, got the string "2\""""),
    (TrainHParams, {**HP, "zzz": 1}, "unknown key 'zzz' (TrainHParams has no such key)"),
    (TrainHParams, without(without(HP, "lr"), "model"), "missing keys 'model', 'lr'"),
    (TrainHParams, [HP], "expected an object (TrainHParams), got a list"),
    (Experiment, {**EXPERIMENT, "train": {**HP, "lr": None}},
     "key 'train.lr': expected a number, got null"),
    (Experiment, {**EXPERIMENT, "prune": {"fractoin": 0.2}},
     "key 'prune': unknown key 'fractoin' (did you mean 'fraction'?)"),
    (list[Member], [MEMBER, {**MEMBER, "references": "r.pt"}],
     """item 1, key 'references': expected a list, got the string "r.pt\""""),
])
def test_conform_names_the_key_and_what_is_wrong(kind, value, message):
    with pytest.raises(InputError) as err:
        conform(value, kind)
    assert str(err.value) == message


def test_a_bug_while_checking_keeps_its_traceback():
    """Only InputError becomes argparse's one line; anything else is a bug and is raised."""
    parser = cli.Parser(prog="t")
    parser.add_argument("--x", action=JsonFlag, schema=complex)  # an annotation conform lacks
    with pytest.raises(TypeError, match="unsupported annotation"):
        parser.parse_args(["--x", "1"])
    assert isinstance(InputError("x"), ValueError)
    with pytest.raises(SystemExit):
        cli.Parser(prog="t").parse_args(["--nope"])  # argparse's own errors still exit (2)
