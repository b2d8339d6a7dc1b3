"""HealthScore serving: the rules-based health score, explanations, the score store and the
BentoML service. Importing this package must not import BentoML: the batch job and training call
the pure scoring modules without a server.
"""
