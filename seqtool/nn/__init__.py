"""The models: torch modules and their configurations."""
