"""``make bench``: each ``bench_*.py`` module measures hcsfs against a baseline in the same run."""
