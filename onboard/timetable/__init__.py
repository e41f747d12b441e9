"""The timetable a bus runs: the version central publishes, fetched ahead and switched on time.

Rules of this room: `store` keeps which version runs and which is staged (agent.sqlite, table
`timetable`); `runtime` does the network I/O and the switch by the bus's own clock, reusing the
ads' content-addressed cache and resumable downloader (onboard/ads/cache.py, download.py: both
are generic over a sha256 and a size). It hands each new feed to the agent, which gives it to
the journey core (onboard/journey/runtime.py `switch_feed`); the journey knows no download.
The face re-exports nothing eagerly: the runtime loads aiohttp.
"""
