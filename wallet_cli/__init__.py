"""Holder wallet CLI. Not built yet: see the Wallet issue."""
