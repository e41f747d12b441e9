"""The agent's own log, kept on disk and read remotely (issue 16)."""
