"""Benchmarks of the operator against the local control plane, each beside a floor measured in the same run.

Entry point: ``python -m bench.run`` (``make bench``); ``--quick`` for a short run. See docs/benchmarks.md.
"""
