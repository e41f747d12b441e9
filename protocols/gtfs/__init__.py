"""protocols/gtfs."""
