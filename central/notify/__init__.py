"""Alarm notifications by e-mail and webhook (issue 18): rules.py, notifier.py, senders.py."""
