"""The README's example runs as printed."""

import pathlib
import re


def test_readme_example_runs(capsys):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert text.startswith("# symlab\n\n```bash\nmake test")
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "factorial(m)*factorial(n) m + n" in out
    assert "passed" in out
    assert "S_128 × R_{>0}^128 × S_4 × GL_16^4 × GL_16^4" in out
