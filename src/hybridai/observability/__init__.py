"""Monitoring concerns shared by every tier: loop supervision (``supervisor``)."""
