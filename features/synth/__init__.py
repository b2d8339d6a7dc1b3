"""The synthetic SaaS world: accounts, usage, support, surveys, commercial and relationship data
drawn from a latent health process whose ground truth (churn, expansion, causes) is kept beside
the tables, so every model and rule can be checked against the truth."""
