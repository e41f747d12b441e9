"""central/store."""
