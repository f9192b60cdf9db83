"""Password hashing with argon2id (RFC 9106), through argon2-cffi.

``verify`` always spends the same work whether or not an account exists, so
the time a failed login takes says nothing about which part was wrong.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# RFC 9106's second recommended option, a little stronger than argon2-cffi's default.
_PROFILES = {
    "default": PasswordHasher(time_cost=3, memory_cost=65536, parallelism=4),
    # Only for the test suite, where thousands of hashes would otherwise dominate.
    "fast": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
}


class Passwords:
    """Hashes and checks passwords with one cost profile."""

    def __init__(self, profile: str = "default") -> None:
        if profile not in _PROFILES:
            raise ValueError(f"unknown password hash profile {profile!r}")
        self._hasher = _PROFILES[profile]
        self._dummy = self._hasher.hash("prefvault-dummy-password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches; checks a dummy hash when there is none."""
        try:
            return self._hasher.verify(stored or self._dummy, password) and bool(stored)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
