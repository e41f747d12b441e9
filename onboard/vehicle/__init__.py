"""onboard/vehicle."""
