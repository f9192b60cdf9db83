"""Sign up: a new account with a password, then straight into the vault."""
