"""Referrals: the agency directory, referrals out to agencies, signals in from them."""
