"""Simulated hardware, so that CI runs the production code paths: buses, GPS receivers, CAN.

    drive     a bus driving a GTFS trip (sans-IO kinematics: time is an argument, seeded randomness)
    truth     what the bus really does at one instant; the simulators encode it
    gps_sim   NMEA sentences from a drive, on a pseudo-terminal like a serial receiver
    can_sim   bus-FMS frames from the truth, with faults, sent on python-can's virtual bus
    pty       the pseudo-terminal and a writer that never blocks

hw_sim imports only `protocols` (tests/test_import_rules.py): the agent cannot tell it from a
real bus, and the simulator cannot peek into the agent.
"""
