"""Middleware for the upstream APIs' own HTTP apps (traffic that reaches them through a marketplace)."""
