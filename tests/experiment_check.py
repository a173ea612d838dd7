"""Run an experiment's small setting and check what every experiment must produce: a complete
sweep, figures and summary, markdown tables that render, a published result page, and claims
that each rest on a stated test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from markdown_check import check_tables

import experiments
from experiments.publish import publish
from symlab.runner import Report, run_sweep

__all__ = ["ENDPOINT_CHECKED", "MEAN_COMPARISONS", "run_small"]

#: experiments whose claims are still decided by comparing means (their owner converts them to
#: intervals over seeds; their result pages say so).
MEAN_COMPARISONS: set[str] = set()

#: experiments whose jobs check that their runs trained (symlab.connect.check_endpoints)
ENDPOINT_CHECKED = {"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}


def _claims(name: str) -> Any:
    return sys.modules[experiments.get(name).run.__module__].claims


def run_small(
    name: str, tmp_path: Path, seeds: int | None = None, *, tables: int | None = 1
) -> tuple[list[dict[str, Any]], Report]:
    """Run ``name``'s small setting, write its report and publish its page, checking each
    step; ``tables``: how many tables the report has (None: any number, at least one)."""
    exp = experiments.get(name)
    out = run_sweep(exp.sweep("small", seeds), tmp_path, workers=1, progress=False)
    assert out.complete, [f["error"] for f in out.failures]
    rep = exp.report(out.records, tmp_path / name, "small")
    assert all(p.exists() for p in rep.files)
    assert {p.suffix for p in rep.files} == {".png", ".pdf", ".md"}
    if name in ENDPOINT_CHECKED:  # every job says whether its runs trained, and why
        for r in out.records:
            if r["result"].get("part") == "swap_costs":  # E8's swap-cost jobs train no pair
                continue
            assert isinstance(r["result"]["trained"], bool) and r["result"]["endpoints"]
    # the tables render, and the result page publishes from these records
    for text in (rep.table, (tmp_path / name / f"{name}_small.md").read_text()):
        n = check_tables(text)
        assert n == tables if tables is not None else n >= 1
    page = publish(name, tmp_path, "small", out=tmp_path / "pages")
    assert (
        check_tables(page.read_text()) >= 3 and (tmp_path / "pages" / f"{name}_small.png").exists()
    )
    for c in _claims(name)(out.records).values():  # every verdict rests on a stated test
        assert c["test"]
        if name not in MEAN_COMPARISONS:
            assert c["verdict"] in ("held", "inconclusive", "failed")
            assert "intervals" in c or c.get("exact"), c  # an interval test, or exact per job
    return out.records, rep
