"""HealthScore training: labels into training sets, LightGBM models, calibration, backtests,
evaluation against baselines, and MLflow tracking and registry. Serving never imports fitting code.
"""
