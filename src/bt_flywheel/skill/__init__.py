"""The skill folder for Agent Skills clients: export and validation."""
