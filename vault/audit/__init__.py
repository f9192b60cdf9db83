"""Transparency-log primitives for the consent log, as the vault uses them.

The Merkle tree, the tree-head format and the export verifier live once, in
the merchant SDK's :mod:`prefvault_sdk.audit` (which auditors and merchants
install without the vault); the modules here are the vault's import path to
them, plus the one thing a verifier never does: signing tree heads.
"""
