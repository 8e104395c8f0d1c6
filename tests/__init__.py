"""Holdfast test suite."""
