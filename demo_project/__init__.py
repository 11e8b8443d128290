"""The demo shop: a normal Django project that shows idempotent-post at work."""
