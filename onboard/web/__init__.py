"""onboard/web."""
