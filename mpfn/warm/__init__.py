"""Keeping models warm on their pools (keep-alive today; forecasting plugs in here)."""
