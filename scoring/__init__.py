"""Scoring: what training and serving both need, below both of them.

The rules-based health score (`scoring.health`), the model-bundle format and its loader
(`scoring.bundle`, `scoring.model_set`) and the one scoring pipeline (`scoring.pipeline`) that
every caller uses to turn (warehouse or payload, accounts, as-of date) into scored accounts.
Nothing here fits a model or speaks HTTP.
"""
