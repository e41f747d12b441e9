"""The running central process: everything that happens because a message arrived or time passed.

    service      the process: paho's network thread, ingest batches, publishing (ONE client)
    ingest       every bus message through one function, group commit, receipts after it
    alarm_center the alarm rules (central/fleet/alarms.py) fed by ingest, stored, published
    dispatch     dispatchers' typed requests: a table of handlers, each answered once
    queries      what a dispatcher may look at: bus detail, listings, reports (shapes the answer)
    sync         desired documents that change with the clock (message expiry, diversion windows)
    retention_task  purging what is past its days (central/retention.py), in small transactions
    serve        the service and its HTTP server as one process (`busfleet central serve`)

Nothing here imports the dashboard; nothing outside this room publishes to a bus. Servers are
not re-exported: import `central.service.service` to run one.
"""
