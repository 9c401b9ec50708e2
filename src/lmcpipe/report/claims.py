"""The papers' claims (``claims.yaml``) and the verdict lmcpipe's numbers give each of them.

A verdict is one of ``VERDICTS``, always with a reason:

* **holds** / **does not hold**: the rule applied to lmcpipe's value, on the paper's protocol;
* **not run**: the tables lack what the measure needs (no pruning, no rewinding, an analysis
  switched off), and the reason says what;
* **not comparable**: the experiment differs from the paper's protocol (another dataset,
  optimiser, learning rate, batch size or length) or the claim's premise does not hold. Never
  "holds" for numbers from another dataset: the reason then says what the rule would give on
  lmcpipe's numbers, which is still worth knowing but is not a reproduction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

from lmcpipe.config import iterations
from lmcpipe.models import NAMES, cifar_resnet
from lmcpipe.models.spec import split_spec
from lmcpipe.report import measures

HOLDS, FAILS, NOT_RUN, NOT_COMPARABLE = "holds", "does not hold", "not run", "not comparable"
VERDICTS = (HOLDS, FAILS, NOT_RUN, NOT_COMPARABLE)
PAPERS = {"A": "Frankle et al. 2020 (LMC and the LTH)",
          "B": "Maene et al. 2021 (why lottery tickets win)",
          "C": "Paul et al. 2023 (unmasking the LTH)"}
TAGS = ("paper", "quoted", "code", "recalled")
SCOPES = ("experiment", "sweep")
RULES = ("below", "above", "near", "within", "is")
STEP_TOLERANCE = 0.05  # a step count within 5 % of the paper's is the same protocol
FIELDS = ("id", "paper", "where", "statement", "paper_value", "tag", "figure", "measure",
          "rule")


class ClaimError(ValueError):
    """A malformed claims file; the message names the claim and the key."""


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    where: str
    statement: str
    paper_value: str
    tag: str
    figure: str
    measure: dict[str, Any]
    rule: dict[str, Any]
    models: tuple[str, ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_name: str = ""
    scope: str = "experiment"

    def applies_to(self, model: str, scope: str) -> bool:
        return self.scope == scope and (not self.models or model in self.models)


@dataclass(frozen=True)
class Subject:
    """What a claim is judged on: an experiment (or a sweep, with its first member's recipe)."""

    name: str
    scope: str
    model: str
    train: dict[str, Any]  # TrainHParams fields, steps in iterations
    per_epoch: int  # iterations per epoch, to read "18ep" in a claim
    figures: tuple[str, ...] = ()  # figures built for it


@dataclass(frozen=True)
class Row:
    """One claim judged: the report's table row."""

    claim: Claim
    verdict: str
    reason: str
    value: measures.Value | None


def load(text: str | None = None) -> list[Claim]:
    """The claims of ``claims.yaml`` (or of ``text``), checked: one line names a bad entry."""
    if text is None:
        text = resources.files("lmcpipe.report").joinpath("claims.yaml").read_text()
    doc = yaml.safe_load(text)
    recipes = doc.get("recipes", {})
    out, seen = [], set()
    for i, entry in enumerate(doc.get("claims", [])):
        where = f"claims[{i}] ({entry.get('id', 'no id')})"
        missing = [k for k in FIELDS if k not in entry]
        if missing:
            raise ClaimError(f"{where}: missing {', '.join(missing)}")
        if entry["id"] in seen:
            raise ClaimError(f"{where}: duplicate id")
        seen.add(entry["id"])
        checks = [("paper", entry["paper"] in PAPERS), ("tag", entry["tag"] in TAGS),
                  ("scope", entry.get("scope", "experiment") in SCOPES),
                  ("measure.kind", entry["measure"].get("kind") in measures.MEASURES),
                  ("rule", len(entry["rule"]) == 1 and next(iter(entry["rule"])) in RULES),
                  ("recipe", entry.get("recipe") is None or entry["recipe"] in recipes)]
        for key, ok in checks:
            if not ok:
                raise ClaimError(f"{where}: bad {key}")
        args = {k: v for k, v in entry["measure"].items() if k != "kind"}
        out.append(Claim(
            id=entry["id"], paper=entry["paper"], where=entry["where"],
            statement=" ".join(str(entry["statement"]).split()),
            paper_value=str(entry["paper_value"]), tag=entry["tag"], figure=entry["figure"],
            measure={"kind": entry["measure"]["kind"], **args}, rule=entry["rule"],
            models=tuple(entry.get("models", ())), recipe=recipes.get(entry.get("recipe"), {}),
            recipe_name=entry.get("recipe", ""), scope=entry.get("scope", "experiment")))
    return out


def differences(recipe: dict[str, Any], subject: Subject) -> list[str]:
    """How the subject's training differs from the paper's recipe, one phrase per key."""
    out = []
    for key, want in recipe.items():
        have = subject.train.get(key)
        if key in ("steps", "warmup_steps"):
            want_it = iterations(want, subject.per_epoch)
            same = have is not None and abs(have - want_it) <= STEP_TOLERANCE * max(want_it, 1)
            want = f"{want_it} ({want})" if isinstance(want, str) else want
        elif isinstance(want, float):
            same = isinstance(have, int | float) and math.isclose(have, want, rel_tol=1e-6)
        else:
            same = have == want
        if not same:
            out.append(f"{key} {have} (paper: {want})")
    return out


def decide(rule: dict[str, Any], value: measures.Value, per_epoch: int) -> tuple[bool, str]:
    """Whether ``value`` satisfies ``rule``, and the comparison in words."""
    (name, arg), x = next(iter(rule.items())), value.mean
    if name == "below":
        return x < arg, f"{x:.3g} < {arg:g}"
    if name == "above":
        return x > arg, f"{x:.3g} > {arg:g}"
    if name == "within":
        want, tol = float(arg["value"]), float(arg["tol"])
        return abs(x - want) <= tol, f"|{x:.3g} - {want:g}| <= {tol:g}"
    if name == "near":
        want, factor = iterations(arg["value"], per_epoch), float(arg["factor"])
        ok = math.isfinite(x) and want / factor <= x <= want * factor
        return ok, f"{want / factor:g} <= {x:.4g} <= {want * factor:g}"
    return bool(x) == bool(arg), "yes" if bool(x) else "no"


def judge(claim: Claim, subject: Subject, tables: measures.Tables) -> Row:
    """The verdict of ``claim`` on ``subject``'s tables."""
    args = {k: v for k, v in claim.measure.items() if k != "kind"}
    try:
        value = measures.MEASURES[claim.measure["kind"]](tables, **args)
    except measures.NotRun as e:
        return Row(claim, NOT_RUN, str(e), None)
    except measures.NotComparable as e:
        return Row(claim, NOT_COMPARABLE, str(e), None)
    ok, how = decide(claim.rule, value, subject.per_epoch)
    outcome = HOLDS if ok else FAILS
    diffs = differences(claim.recipe, subject)
    if diffs:
        return Row(claim, NOT_COMPARABLE, f"protocol differs from the paper's: {'; '.join(diffs)}"
                   f". On these numbers the rule would say: {outcome} ({how})", value)
    if not claim.recipe:
        how += f"; a general claim of paper {claim.paper}, tested on this experiment's recipe"
    return Row(claim, outcome, how, value)


def judge_all(subject: Subject, tables: measures.Tables,
              claims: list[Claim] | None = None) -> list[Row]:
    """Every claim that applies to the subject's network and scope, judged.

    An experiment on a network none of the papers trained (one lmcpipe does not ship, or a
    CIFAR ResNet of another depth or width) is judged on the general claims as any other, and
    on the claims about the papers' own networks too, each "not comparable" (or "not run",
    when the tables lack what it measures): a reader sees what the paper said of its networks
    next to what the rule gives on this one, never a "holds" for another network.
    ``cifar_resnet_20`` is ``resnet20`` and is judged as it."""
    name = split_spec(subject.model)[0]
    model = "resnet20" if cifar_resnet(name) == (20, 16) else name
    foreign = model not in NAMES
    rows = []
    for c in claims if claims is not None else load():
        if c.applies_to(model, subject.scope):
            rows.append(judge(c, subject, tables))
        elif foreign and c.scope == subject.scope:
            row = judge(c, subject, tables)
            if row.verdict != NOT_RUN:
                said = row.reason if row.verdict == NOT_COMPARABLE else \
                    f"on these numbers the rule would say: {row.verdict} ({row.reason})"
                row = Row(c, NOT_COMPARABLE, f"a claim about the paper's "
                          f"{', '.join(c.models)}; this experiment trains {subject.model}. "
                          f"{said[:1].upper()}{said[1:]}", row.value)
            rows.append(row)
    return rows


def counts(rows: list[Row]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
