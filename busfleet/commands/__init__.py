"""Subcommands of the busfleet CLI, one module per group."""
