"""Revisions of the registry upload workflow's tables."""
