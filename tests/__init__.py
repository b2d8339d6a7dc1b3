"""HealthScore's test suite, one package per area."""
