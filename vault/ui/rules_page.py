"""My rules: global rules that override every merchant, and the preferred channel order."""
