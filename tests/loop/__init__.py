"""Tests; the folders mirror the screener package."""
