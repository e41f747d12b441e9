"""Fleet health (issue 16): what the bus's machine says of itself, reported at a low rate."""
