"""The reliability suite: real gunicorn servers answering real HTTP (issue 4)."""
