"""koe_kit: the plumbing every koe service shares. No domain logic lives here."""
