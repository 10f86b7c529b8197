"""Accounts: password hashing and policy, users, invites, API tokens, roles and access."""
