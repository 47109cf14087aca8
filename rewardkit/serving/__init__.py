"""`rewardkit serve`: the HTTP server for RL loops, its settings, request parsing, dynamic batcher and
Prometheus metrics.
"""
