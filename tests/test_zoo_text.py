"""A representative sample of the transformers text census in CI (real tiny models, random
weights, about half a minute): each model that the census found derived and sound stays so —
one per cause fixed for it — and a model refused today is refused with a named error, never a
crash or an unsound group. The whole census is ``tests/test_model_zoo.py::test_full_census``
(slow) and ``symlab coverage``; its last numbers are in docs/how-to/your-model.md."""

from __future__ import annotations

import pytest

from symlab.testing.zoo_models import installed_families
from symlab.testing.zoo_report import ZooReport, model_zoo_report

BASE, SEQ = "transformers: base model", "transformers: sequence classification"

#: (family, model type, what it exercises): derived and sound today, a regression is a bug.
DERIVED = [
    (BASE, "qwen3", "rotary embedding outside a recognised attention block (q/k norms)"),
    (BASE, "mbart", "one embedding table read by the encoder and the decoder (tied)"),
    (BASE, "esm", "GELU written with erf"),
    (BASE, "phi3", "an empty slice of the queries (q[..., d:] at d)"),
    (BASE, "fnet", "Fourier token mixing (fft, real part: opaque)"),
    (SEQ, "doge", "float32 RMSNorm inside a float64 model (the census's tolerance)"),
    (BASE, "openai-gpt", "leaf calls export's run misses: matched on a real run instead"),
]
#: Refused today with a named error (data-dependent pooling at the end-of-sequence tokens).
REFUSED = [(SEQ, "bart")]


@pytest.mark.skipif(
    not {BASE, SEQ} <= set(installed_families()), reason="transformers is not installed"
)
def test_text_sample_is_derived_and_sound_or_refused_by_name() -> None:
    report = ZooReport()
    for family, name, *_ in DERIVED + REFUSED:
        report.results += model_zoo_report([family], names=[name], samples=2).results
    table = report.table()
    assert len(report.results) == len(DERIVED + REFUSED), table
    outcome = {(r.family, r.name): r for r in report.results}
    for family, name, why in DERIVED:
        r = outcome[(family, name)]
        assert r.outcome == "derived and sound", f"{name} ({why}): {r.outcome}: {r.detail}"
    for key in REFUSED:
        r = outcome[key]
        assert r.outcome in ("derived and sound", "refused"), f"{key}: {r.detail}"
        if r.outcome == "refused":
            assert r.detail.split(":")[0].endswith("Error"), r.detail  # a named symlab error
