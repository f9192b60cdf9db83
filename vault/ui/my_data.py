"""My data: download everything as JSON, or delete the account (crypto-shredding)."""
