"""The todo-api benchmark: `python -m bench` from `backend/` (README, section Performance)."""
