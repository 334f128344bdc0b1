"""Providers: one module per platform behind the interface in :mod:`providers.base`."""
