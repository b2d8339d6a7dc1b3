"""The input data contract: the tables and columns a customer's export must provide, the mapping
language that turns a foreign export into them, row-level validation and the transactional
ingest into the DuckDB warehouse."""
