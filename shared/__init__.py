"""Opora's common library: config, database, events, messaging, HTTP, auth, logging.

There is one way to do each of these things, and it lives here.
"""
