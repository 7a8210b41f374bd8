"""Workstation side of edge-rbmlp: data fetching, training with larq, export (``python -m train``).

This package is the only code of the project that imports TensorFlow or larq.
"""
