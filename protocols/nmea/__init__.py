"""protocols/nmea."""
