"""Central over HTTP (aiohttp): what passenger apps and buses fetch.

    server     the site: GTFS-Realtime feeds, /healthz
    gtfs_rt    VehiclePositions and TripUpdates from fleet state (pure)
    alerts     Service Alerts for diversions (pure)
    journeys   each bus's journey status for the feeds
    media      ad media by content hash, with Range requests

The server reads through the store; it never writes and never publishes to a bus.
"""
