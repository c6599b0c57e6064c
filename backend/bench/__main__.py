"""`python -m bench` from backend/, or `python backend/bench` from the repository root."""

import sys
from pathlib import Path

if not __package__:  # run as a directory: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import main

main()
