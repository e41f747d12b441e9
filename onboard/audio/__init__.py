"""Spoken announcements on the bus (issue 17): what is said, by which engine, on which output.

`api.py` is the face the rest of the agent uses: an `Utterance` handed to a `Speaker`.
"""
