"""Tasks: each benchmark family in its own room, built on the generic core."""
