"""central/dashboard."""
