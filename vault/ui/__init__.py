"""The person's web pages (server-rendered, CSRF on every form).

``views`` holds the blueprint, login and the shared error pages; each page
area is its own module registering on that blueprint. ``PAGE_MODULES`` is
the list ``register_ui`` imports, so a new page is one module and one line.
"""

PAGE_MODULES = (
    "vault.ui.dashboard",
    "vault.ui.merchant_page",
    "vault.ui.signup",
    "vault.ui.rules_page",
    "vault.ui.profile_page",
    "vault.ui.activity_page",
    "vault.ui.my_data",
)
