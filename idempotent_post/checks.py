"""System checks (L4): refuse settings that cannot work."""
