"""Events the referrals service consumes (registry's measure.assigned comes with its issue)."""

from shared.messaging.consumer import Handlers

handlers = Handlers("referrals")
