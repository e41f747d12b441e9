"""The dashboard's screens, one class per file: they read `view.DashboardView`, post messages.

A screen never imports the app (tests/test_dashboard_messages.py checks it): what it draws
comes down through the view, what the dispatcher does goes up as a message the app handles.
Import each screen from its own module; this face re-exports nothing.
"""
