"""Software updates on the bus (issue 16): TUF-verified releases, A/B slots, automatic rollback."""
