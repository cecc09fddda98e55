"""Identities: client secrets, token signing keys and access tokens, roles and scopes."""
