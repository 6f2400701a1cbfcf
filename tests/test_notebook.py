"""examples/quickstart.ipynb runs top to bottom (nbclient) and shows what it promises: a before
and after evaluation table and the curves inline."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def test_the_notebook_is_committed_without_outputs():
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_quickstart_notebook_runs_and_shows_its_results():
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
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
