"""Test data builders shared by the areas: worlds, frames, the service client."""
