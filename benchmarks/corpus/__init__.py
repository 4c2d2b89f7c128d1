"""Labeled detection corpus (placeholder)."""
