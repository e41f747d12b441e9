"""central/dashboard/widgets."""
