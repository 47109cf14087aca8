"""The model card written beside every saved model: its input layout, a plain-transformers snippet that
reproduces rewardkit's rewards, and the run's data, settings and held-out metrics.
"""
