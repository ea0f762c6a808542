"""Usage caps: jobs per account, billing period (the Stripe subscription's, else the calendar month) and API surface
against the account's caps; a reached hard cap holds the account's keys (source `cap`) until the period ends or the
cap is raised, and crossings become usage alerts."""
