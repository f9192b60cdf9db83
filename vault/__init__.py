"""Preference Vault: a customer-controlled contact-permission vault.

People keep an encrypted profile and their own contact permissions; merchants
subscribe through an OAuth grant the person approves, and ask the vault before
they reach anyone. See ``README.md`` for running it and DESIGN.md for the why.
"""

__version__ = "0.1.0"
