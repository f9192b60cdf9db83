"""Domain rules of the vault. Nothing in this package imports Flask.

Every service takes a database session (it flushes, the caller commits) and
its collaborators (clock, keys) as keyword arguments, so the same rules run
behind the API, the UI, the CLI and the tests.
"""
