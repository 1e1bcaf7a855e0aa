"""The README's commands are what CI runs."""

import re

from conftest import REPO, checkout_only


def _readme_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


@checkout_only
def test_ci_runs_the_readme_test_command():
    main_job, test_cmd = _readme_commands()
    assert "deepcel0 demo" in main_job and "pytest" in test_cmd
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_cmd in [line.strip() for line in ci]


@checkout_only
def test_setup_script_pins_torch():
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "torch==2.13.0" in setup


def test_the_readme_python_example_runs_and_uses_the_files_pixel_size(tmp_path, monkeypatch):
    """The README's Python block, run as written on a small 160 nm stack: it writes the
    CSV, and the coordinates use the file's pixel size (no PixelSizeWarning)."""
    import warnings

    import numpy as np

    from napari_deepcel0.core.io import read_localizations, write_tiff
    from napari_deepcel0.core.predict import PixelSizeWarning
    from napari_deepcel0.core.simulate import simulate_stack

    text = (REPO / "README.md").read_text()
    code = re.search(r"### Python\n\n```python\n(.*?)```", text, re.S).group(1)
    frames, _ = simulate_stack(n_frames=2, shape=(32, 32), seed=2)
    write_tiff(tmp_path / "frames.tif", frames, pixel_size_nm=160.0)
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the bundled model is a 100 nm one: it says so
        warnings.simplefilter("error", PixelSizeWarning)  # (checked first: filters added later come first)
        exec(compile(code, "README.md", "exec"), {})
    table = read_localizations(tmp_path / "locs.csv")
    assert len(table) > 0 and table["x [nm]"].max() > 32 * 100  # beyond a 100 nm frame: 160 nm pixels
    assert np.all(table["x [nm]"] < 32 * 160)


@checkout_only
def test_the_results_page_is_the_one_its_json_files_give(tmp_path):
    """docs/results.md is generated from benchmarks/results/*.json: a JSON added or changed
    without regenerating it left the page stale, and a JSON of another shape named like a
    speed run (speed_*.json) broke the generator without any test noticing."""
    import subprocess
    import sys

    out = tmp_path / "results.md"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "make_results_page.py"), "--out", str(out)],
                   check=True, capture_output=True, cwd=REPO)
    assert out.read_text() == (REPO / "docs" / "results.md").read_text(), \
        "docs/results.md is stale: run python benchmarks/make_results_page.py"
