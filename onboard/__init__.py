"""The onboard agent: the software on each bus.

Rooms (each package's `__init__` states its rules): gps/ and vehicle/ (hardware behind backends
from one table), journey/ (the pure journey core: imports protocols only), link/ (outbox,
desired state, commands, the MQTT link), web/ (the local site scaffold and live feed), and the
presentations display/, driver/, portal/, ads/. Owners of shared resources, one each: store.py
(agent.sqlite), backoff.py (the reconnect policy), errors.py (the exception tree),
backends.py (the backend loader), link/settings.py (the MQTT settings). agent.py is the
composition root only. Siblings import siblings directly, never a package face.
"""
