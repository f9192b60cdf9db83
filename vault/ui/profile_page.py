"""My profile: the sealed profile fields and which merchants see each one."""
