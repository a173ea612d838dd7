"""The README's example runs as printed."""

import pathlib
import re


def test_readme_example_runs(capsys):
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    assert text.startswith("# symlab\n\n```bash\nmake test")
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "factorial(m)*factorial(n) m + n" in out
    assert "passed" in out
