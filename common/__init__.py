"""What both Django apps share, neutral ground below them: error kinds and how the API answers them,
API permissions, the staff-only page guard and the heartbeat that long jobs keep fresh.

It imports neither app (`annotation`, `training`), so either may build on it; it may read `preferences`.
"""
