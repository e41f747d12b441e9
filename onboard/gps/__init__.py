"""onboard/gps."""
