"""The SDK's version, sent in the User-Agent so the vault's operators can tell SDKs apart."""

__version__ = "0.1.0"
