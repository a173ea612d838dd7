"""A bare ``import symlab`` loads symlab's own modules and nothing heavy beyond torch: sympy and
networkx are bound lazily (symlab.perf.lazy_import) and scipy.optimize, scipy.linalg are
imported where used. Run in a fresh interpreter, since this one has loaded everything."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys, torch
before = set(sys.modules)
import symlab
new = set(sys.modules) - before
lazy = sorted(n for n in new if type(sys.modules[n]).__name__ == "_LazyModule")
loaded = sorted({n.split(".")[0] for n in new if n not in lazy})
symlab.sympy.Integer(3)  # first use loads sympy
print(json.dumps({"loaded": loaded, "lazy": lazy, "after_use": "sympy.core" in sys.modules}))
"""


def test_bare_import_loads_no_heavy_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=300
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["loaded"] == ["symlab"], found  # no scipy.optimize, sympy, networkx, POT, ...
    assert found["lazy"] == ["networkx", "sympy"]
    assert found["after_use"]  # control: the lazy binding does load on first use
