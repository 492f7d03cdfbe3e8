"""The scale-out model's validation against the measured sweep."""

import pandas as pd

from flake_lib import scaleout


def test_validation_counts_no_load_below_a_knee_that_was_not_found():
    rows = [{"mode": m, "method": "pm", "qps": q, "repeat": 0, "median_ms": 2.0, "p99_ms": 10.0}
            for m in ("native", "emulated") for q in (300.0, 500.0)]
    measured, modelled = pd.DataFrame(rows), pd.DataFrame(rows)
    table = scaleout.validation(modelled, measured, calibration_qps={"native": 300.0, "emulated": 300.0},
                                knee_qps={"native": 400.0, "emulated": None})
    below = table.set_index(["mode", "load"])["below_knee"]
    assert below[("native", 300.0)] and not below[("native", 500.0)]
    assert not below[("emulated", 300.0)] and not below[("emulated", 500.0)]
