"""HTTP schemas of the referrals service."""
