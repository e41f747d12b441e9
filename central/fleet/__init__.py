"""central/fleet."""
