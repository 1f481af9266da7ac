"""Notifications: email and SMS to agency staff (and, by consent, families) from domain events."""
