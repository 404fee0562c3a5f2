"""CLI verbs, one module per verb."""
