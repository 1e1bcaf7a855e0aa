"""The README's commands are what CI runs."""

import re

from conftest import REPO


def _readme_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_ci_runs_the_readme_test_command():
    main_job, test_cmd = _readme_commands()
    assert "deepcel0 demo" in main_job and "pytest" in test_cmd
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci]


def test_setup_script_pins_torch():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "torch==2.13.0" in setup
