"""protocols/j1939."""
