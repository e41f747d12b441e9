"""central/service."""
