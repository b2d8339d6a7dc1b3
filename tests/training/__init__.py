"""Labels, models, backtests, calibration, tracking, validate-score."""
