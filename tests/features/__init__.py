"""Point-in-time features: definitions, the registry, no leakage."""
