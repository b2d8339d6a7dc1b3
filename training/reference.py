"""The training reference the monitoring measures drift against, saved next to the bundles.

`models_dir/reference.json`: the distribution (quantile bins, `scoring.drift.build_reference`)
of every numeric model feature and of the rules score over the training rows, overall and per
segment. Serving reads it (`serving.monitoring`); it never refits anything.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from scoring.drift import REFERENCE_FILE, build_reference

SEGMENT = "segment"


def write_reference(frame: pd.DataFrame, features: Sequence[str], models_dir: Path,
                    *, bins: int = 10) -> Path:
    """Write the reference of `features` (and `score`, when the frame has it) of the training
    rows; non-numeric features (categories) are left out."""
    numeric = [c for c in [*features, "score"] if c in frame.columns
               and pd.api.types.is_numeric_dtype(frame[c]) and not
               pd.api.types.is_bool_dtype(frame[c])]
    ref = build_reference(frame, numeric, segment=SEGMENT if SEGMENT in frame.columns else None,
                          bins=bins)
    out = Path(models_dir) / REFERENCE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(ref))
    return out
