"""central/dashboard/screens."""
