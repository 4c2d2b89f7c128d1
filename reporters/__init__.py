"""Turning a Report into JSON, terminal text and one self-contained HTML file. No detection here."""
