"""The walkthrough notebook runs top to bottom on the project's own kernel and shows what it
promises: a metrics table with the baselines, the report, a SHAP plot and the rules comparison."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "walkthrough.ipynb"


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", ""))
        data = o.get("data", {})
        out.append(data.get("text/plain", ""))
        out.append(data.get("text/markdown", ""))
    return "\n".join(out)


def test_the_walkthrough_runs_and_shows_every_step(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=300,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(_text(c) for c in nb.cells if c.cell_type == "code")
    assert "champion" in outputs
    for scorer in ("model", "logistic", "rules", "oracle"):
        assert scorer in outputs
    assert "## churn_90d" in outputs and "Rolling-origin backtest" in outputs
    assert any("image/png" in o.get("data", {}) for c in nb.cells
               for o in c.get("outputs", []))
    assert "Spearman correlation" in outputs
    assert "churn_90d" in outputs and "expansion_30d" in outputs
