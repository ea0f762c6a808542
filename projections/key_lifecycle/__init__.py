"""The key lifecycle: Stripe's dunning events, through the dunning policy, into key suspensions and notices."""
