"""Raids: joint interagency home visits: scheduling, participants, visit order, results."""
