"""The person's web pages (server-rendered, CSRF on every form)."""
