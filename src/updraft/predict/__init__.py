"""Overload prediction (filled in below)."""
