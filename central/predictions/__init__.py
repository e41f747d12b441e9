"""Central's arrival-prediction model: learned from the journey events it holds.

    keeper   the one owner of the learned model in a process: learns it hourly on a worker
             thread (its own connection), never on the event loop; both consumers read it
    learn    the tables (segment travel time and dwell per time-of-day bucket) from history
    live     predictions for the buses on their trips now, for GTFS-RT (a bus's reported
             journey turned into the predictor's live state)
    publish  each bus's routes' part of the model, for the coming hours, in its desired document

The prediction itself is protocols/predict.py, shared with the bus.
"""
