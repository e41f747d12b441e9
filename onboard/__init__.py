"""onboard."""
