"""HealthScore features: the input data contract, validated ingestion into DuckDB, the synthetic
world generator and point-in-time features.

This package knows nothing about labels' use, models or HTTP: training and serving import it,
never the other way round.
"""
