"""Events the registry consumes (referrals' signals and outcomes, raids' visits come with their issues)."""

from shared.messaging.consumer import Handlers

handlers = Handlers("registry")
