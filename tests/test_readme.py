"""The README's examples run as printed: every python block, and its quick CLI lines."""

import pathlib
import re
import shlex

from typer.testing import CliRunner

from symlab.cli import app

README = (pathlib.Path(__file__).parents[1] / "README.md").read_text()


def test_readme_example_runs(capsys):
    text = README
    assert text.startswith("# symlab\n\n```bash\nmake test")
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "factorial(m)*factorial(n) m + n" in out
    assert "passed" in out
    assert "S_128 × R_{>0}^128 × S_4 × GL_16^4 × GL_16^4" in out
    assert "loss barrier:" in out and "nats aligned" in out
    assert "merge without alignment predicted: False" in out


def test_readme_points_only_inside_the_repository():
    assert "../shared" not in README and "SCIENCE.md" not in README
    for link in re.findall(r"\]\(([^)#]+)\)", README):
        if not link.startswith("http"):
            assert (pathlib.Path(__file__).parents[1] / link).exists(), link


def test_readme_cli_lines_run():
    quick = ("symlab symmetries resnet20", "symlab experiment list")
    lines = [ln.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", README, re.S)
             for ln in block.splitlines()]  # fmt: skip
    ran = 0
    for line in lines:
        if line.startswith(quick):
            out = CliRunner().invoke(app, shlex.split(line)[1:])
            assert out.exit_code == 0, (line, out.output)
            ran += 1
    assert ran == len(quick)
