"""The vault's OAuth 2 / OpenID Connect authorization server (Authlib).

``server.py`` wires the grants and endpoints, ``grants.py`` holds the
hardened grants (PKCE S256 for everyone, atomic single-use codes, rotating
refresh tokens with reuse detection), ``tokens.py`` the hashed token store,
``views.py`` the HTTP routes including the consent page.
"""
