"""Probes: re-run a flagged config briefly with PyTorch to confirm a diagnosis and find the smallest fix.

`probes.spec` is torch-free (the report writes specs); everything that trains imports torch lazily.
"""
