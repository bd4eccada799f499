"""The README's tour is the script that runs it, and its example files are the ones shipped."""

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from neuralfolio.cli import app
from neuralfolio.config import RunConfig, read_config_file

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str, lang: str) -> str:
    at = README.index(heading)
    start = README.index(f"```{lang}\n", at) + len(lang) + 4
    return README[start: README.index("```\n", start)]


def test_the_tour_block_is_the_tour_script():
    script = (ROOT / "examples" / "tour.sh").read_text()
    body = script[script.index("# tour:begin\n") + 13: script.index("# tour:end")]
    assert _block_after("### Command line", "bash") == "source .venv/bin/activate\n" + body


def test_the_example_files_are_the_readme_blocks_and_valid():
    assert _block_after("the run defaults for the rest", "toml") == \
        (ROOT / "examples" / "run.toml").read_text()
    assert _block_after("`examples/caps.yaml`, as used above", "yaml") == \
        (ROOT / "examples" / "caps.yaml").read_text()
    cfg = RunConfig.from_file(ROOT / "examples" / "run.toml")
    assert cfg.train.model == "attention" and cfg.outcome_train.loss == "variance"
    assert read_config_file(ROOT / "examples" / "caps.yaml")["head_options"]["max_weight"] == 0.1


def test_every_tour_command_parses_and_writes_under_tour():
    script = (ROOT / "examples" / "tour.sh").read_text()
    body = script[script.index("# tour:begin\n"): script.index("# tour:end")]
    commands = [line for line in body.splitlines() if line.startswith("neuralfolio ")]
    assert len(commands) >= 15
    runner = CliRunner()
    for line in commands:
        args = shlex.split(line, comments=True)[1:]
        # every option the line uses exists on its command (--help parses the others too)
        result = runner.invoke(app, [*args, "--help"], catch_exceptions=False)
        assert result.exit_code == 0, (line, result.output)
        for out in re.findall(r"--(?:out|plot) (\S+)", line):
            assert out.startswith("tour/"), line
