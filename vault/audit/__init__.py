"""Transparency-log primitives for the consent log: Merkle trees, signed tree heads, verifier."""
