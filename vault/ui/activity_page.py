"""Activity: every consent change and reported contact, and contacts per week against caps."""
