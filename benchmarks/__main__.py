"""``python -m benchmarks``: the whole of ``make bench`` (see benchmarks/live.py)."""

from benchmarks.live import main

main()
