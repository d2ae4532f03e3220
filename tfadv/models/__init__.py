"""Model definitions, one module per family (import the module you need; nothing is imported here)."""
