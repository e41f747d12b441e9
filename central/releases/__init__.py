"""Software releases at city hall (issue 16): building them, signing them into a TUF repository."""
