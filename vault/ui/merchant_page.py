"""The merchant page: one subscription's permission grid, shared fields, history and revoke."""
