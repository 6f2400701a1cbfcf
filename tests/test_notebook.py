"""examples/quickstart.ipynb runs top to bottom (nbclient) and shows what it promises: a before
and after evaluation table and the curves inline."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
DISTILL = ROOT / "examples" / "distill.ipynb"


def _run(path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


@pytest.mark.parametrize("path", [NOTEBOOK, DISTILL], ids=lambda p: p.stem)
def test_the_notebook_is_committed_without_outputs(path):
    import nbformat

    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_its_results():
    nb = _run(NOTEBOOK)
    # what each code cell printed (stdout; progress bars and warnings go to stderr)
    texts = ["".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout") for c in nb.cells
             if c.cell_type == "code"]
    tables = [t for t in texts if "dataset" in t and "pass@1" in t and "arithmetic" in t]
    assert len(tables) >= 2, texts  # before and after
    assert any("run directory:" in t for t in texts), texts
    summary = next(t for t in texts if "pass@1 before" in t)
    before, after = (float(x) for x in summary.split("before ")[1].split(" -> after "))
    assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert (ROOT / "runs" / "quickstart" / "run" / "final" / "config.json").is_file()


@pytest.mark.slow
def test_distill_notebook_generates_filters_trains_a_student_and_evaluates():
    nb = _run(DISTILL)
    texts = ["".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout") for c in nb.cells
             if c.cell_type == "code"]
    report = next(t for t in texts if "near_duplicate" in t)
    read = int(next(line for line in report.splitlines() if line.startswith("read")).split()[1])
    kept = int(next(line for line in report.splitlines() if line.startswith("kept")).split()[1])
    assert read == 64 and 0 < kept <= 32, report  # 16 problems x 4 traces; at most 2 kept per problem
    evals = next(t for t in texts if t.startswith("teacher"))
    assert evals.count("arithmetic") == 2 and "student" in evals
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert (ROOT / "runs" / "distill_notebook" / "student" / "final" / "config.json").is_file()

