"""The reproduction report as static HTML: one page per experiment (or sweep), and an index.

Pages are plain files that work from the filesystem (``file://``) with no server and no
script: figures are linked by relative paths (a PNG inline, its PDF one click away), styles are
inline. Each page also writes its judged claims as a tidy CSV (``paths.report_claims``), which is
what the index reads for its verdict counts, and what a researcher loads with pandas.

Templates are Jinja2 (``templates/``), autoescaped: claim texts and reasons are data.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import jinja2
import pandas as pd

from lmcpipe import csvfiles, paths
from lmcpipe.atomic import save_text
from lmcpipe.figures import registry
from lmcpipe.provenance import commit, version
from lmcpipe.report import claims as claims_mod
from lmcpipe.report.measures import Tables

CLAIM_COLUMNS = ["subject", "scope", "claim", "paper", "where", "statement", "paper_value",
                 "tag", "verdict", "reason", "value", "value_mean", "value_sd", "value_n",
                 "figure"]
PROVENANCE_KEYS = ("commit", "lmcpipe", "torch", "cuda", "device", "device_name", "host")
VERDICT_CLASS = {claims_mod.HOLDS: "holds", claims_mod.FAILS: "fails",
                 claims_mod.NOT_RUN: "notrun", claims_mod.NOT_COMPARABLE: "notcomparable"}

_ENV = jinja2.Environment(loader=jinja2.PackageLoader("lmcpipe.report", "templates"),
                          autoescape=True, trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)


def _rel(target: str, page: str) -> str:
    """``target`` as a link relative to the directory of ``page`` (both repository-relative)."""
    return os.path.relpath(target, os.path.dirname(page) or ".")


def claim_frame(subject: claims_mod.Subject, rows: list[claims_mod.Row]) -> pd.DataFrame:
    """The judged claims as a tidy table, one row per claim."""
    out = []
    for r in rows:
        v = r.value
        out.append({"subject": subject.name, "scope": subject.scope, "claim": r.claim.id,
                    "paper": r.claim.paper, "where": r.claim.where,
                    "statement": r.claim.statement, "paper_value": r.claim.paper_value,
                    "tag": r.claim.tag, "verdict": r.verdict, "reason": r.reason,
                    "value": v.text if v else "", "value_mean": v.mean if v else math.nan,
                    "value_sd": v.sd if v else math.nan, "value_n": v.n if v else 0,
                    "figure": r.claim.figure})
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)


def stage_times(provenance: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Wall time per stage from the records the stages wrote (``provenance.csv``)."""
    if provenance is None or provenance.empty:
        return []
    out = []
    for stage, g in provenance.groupby("stage", sort=False):
        w = g["wall_s"].astype(float)
        out.append({"stage": stage, "records": len(g), "total_s": f"{w.sum():.1f}",
                    "median_s": f"{w.median():.2f}", "max_s": f"{w.max():.2f}",
                    "steps_per_s": (f"{g['steps_per_s'].astype(float).median():.1f}"
                                    if "steps_per_s" in g and g["steps_per_s"].notna().any()
                                    else "")})
    return out


def environments(provenance: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The distinct software/hardware environments the numbers were computed in."""
    if provenance is None or provenance.empty:
        return []
    keys = [k for k in PROVENANCE_KEYS if k in provenance.columns]
    envs = provenance[keys].astype(str).replace("nan", "").value_counts().reset_index()
    return [{**{k: row[k] for k in keys}, "records": int(row["count"])}
            for _, row in envs.iterrows()]


def figure_cells(subject: claims_mod.Subject, page: str) -> dict[str, dict[str, str]]:
    """{figure name: its PNG and PDF links and caption} for the figures built for the subject."""
    out = {}
    for name in subject.figures:
        pdf = (paths.sweep_figure(subject.name, name) if subject.scope == "sweep"
               else paths.figure(subject.name, name))
        out[name] = {"png": _rel(paths.figure_png(pdf), page), "pdf": _rel(pdf, page),
                     "caption": registry.FIGURES[name].caption,
                     "paper": registry.FIGURES[name].paper}
    return out


def write_page(subject: claims_mod.Subject, tables_dir: str, page: str, claims_csv: str,
               config: dict[str, Any], built_from: str = "",
               members: tuple[str, ...] = ()) -> list[claims_mod.Row]:
    """Judge every claim that applies to ``subject``, then write its page and its claims CSV."""
    tables = Tables(tables_dir)
    rows = claims_mod.judge_all(subject, tables)
    figures = figure_cells(subject, page)
    provenance = tables.get("provenance")
    html = _ENV.get_template("page.html.j2").render(
        subject=subject, rows=[{"row": r, "css": VERDICT_CLASS[r.verdict],
                                "figure": figures.get(r.claim.figure)} for r in rows],
        counts=claims_mod.counts(rows), css=VERDICT_CLASS, papers=claims_mod.PAPERS,
        figures=figures,
        config=json.dumps(config, indent=2, sort_keys=True, default=str),
        stages=stage_times(provenance), environments=environments(provenance),
        built_from=built_from, built_at=_now(), index=_rel(paths.REPORT_INDEX, page),
        members=[{"name": m, "href": _rel(paths.report_page(m), page)} for m in members],
        tables=_rel(tables_dir, page))
    save_text(html, page)
    csvfiles.save_frame(claim_frame(subject, rows), claims_csv)
    return rows


def write_index(names: list[str], claims_files: list[str], out: str, built_from: str = ""
                ) -> dict[str, int]:
    """The index: one line per page with its verdict counts, and every claim's verdict."""
    entries, total = [], {v: 0 for v in claims_mod.VERDICTS}
    frames = []
    for name, f in zip(names, claims_files, strict=True):
        frame = csvfiles.read(f, ["verdict", "scope"], keep_default_na=False)
        counts = {v: int((frame["verdict"] == v).sum()) for v in claims_mod.VERDICTS}
        for v, n in counts.items():
            total[v] += n
        scope = frame["scope"].iloc[0] if len(frame) else "experiment"
        entries.append({"name": name, "href": _rel(paths.report_page(name), out),
                        "counts": counts, "n": len(frame), "scope": scope})
        frames.append(frame)
    html = _ENV.get_template("index.html.j2").render(
        entries=entries, total=total, verdicts=claims_mod.VERDICTS, css=VERDICT_CLASS,
        papers=claims_mod.PAPERS, claims=claims_mod.load(), built_from=built_from,
        built_at=_now(), judged=_by_claim(frames))
    save_text(html, out)
    return total


def _by_claim(frames: list[pd.DataFrame]) -> dict[str, list[dict[str, str]]]:
    """{claim id: [(subject, verdict)]} over every page, for the index's claim list."""
    out: dict[str, list[dict[str, str]]] = {}
    for frame in frames:
        for r in frame.itertuples():
            out.setdefault(r.claim, []).append({"subject": r.subject, "verdict": r.verdict,
                                                "css": VERDICT_CLASS[r.verdict]})
    return out


def built_from() -> str:
    """lmcpipe's version and commit, shown on every page: which code judged the claims."""
    return f"{version()} at {commit()}"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def subject_of(name: str, scope: str, model: str, train: Any, per_epoch: int,
               figures: list[str]) -> claims_mod.Subject:
    return claims_mod.Subject(name=name, scope=scope, model=model, train=asdict(train),
                              per_epoch=per_epoch, figures=tuple(figures))
