"""The input contract: validation, ingestion, mappings, the contract page."""
