"""busfleet/broker."""
