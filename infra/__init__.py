"""What a run needs besides the method: its settings and command line, run folders, speed, several processes,
and the NaN guard."""
