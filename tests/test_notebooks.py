"""Every notebook runs top to bottom (with tiny step counts and a tiny model) and produces its figures."""
import os

import pytest

from data import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_simcse_from_scratch.ipynb", "02_dropout_ablation.ipynb",
                                           "03_alignment_uniformity.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, data_root, tiny_checkpoint, monkeypatch, tmp_path):
    """Top to bottom with 2 steps of a tiny random BERT: that every cell runs and draws; the committed
    outputs are a full run with all-MiniLM-L6-v2."""
    import nbformat
    from nbclient import NotebookClient
    monkeypatch.setenv("SIMCSE_NB_MODEL", tiny_checkpoint)
    monkeypatch.setenv("SIMCSE_NB_STEPS", "2")
    monkeypatch.setenv("SIMCSE_NB_BATCH", "8")
    monkeypatch.setenv("SIMCSE_DATA_DIR", str(data_root))
    notebook = nbformat.read(path, as_version=4)
    work = tmp_path / "notebooks"  # a copy, so that the committed figures stay those of the full run
    work.mkdir()
    for module in [*REPO.glob("*.py"), *(p.parent for p in REPO.glob("*/__init__.py"))]:  # the project's
        os.symlink(module, tmp_path / module.name)  # modules and packages, importable from the copy's parent
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(work)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
              if o.output_type == "error"]
    assert not errors
    images = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert images, "the notebook should draw at least one figure"
