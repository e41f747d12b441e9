"""Central's arrival-prediction model: learned from the journey events it holds.

    learn       the tables (segment travel time and dwell per time-of-day bucket) from history
    trip_stops  a trip's timetable as the predictor wants it, and the bus's live state from
                its reported journey (for GTFS-RT)

The prediction itself is protocols/predict.py, shared with the bus.
"""
