"""onboard/journey."""
