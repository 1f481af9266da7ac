"""The referrals HTTP API: blueprints are registered in app.py."""
