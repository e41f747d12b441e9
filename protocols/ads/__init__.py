"""protocols/ads."""
