"""onboard/link."""
