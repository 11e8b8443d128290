"""Make POST safe to retry: ``Idempotency-Key`` for APIs, Post/Redirect/Get for forms."""

from typing import TYPE_CHECKING, Any

__all__ = ["current", "idempotent", "lookup"]

if TYPE_CHECKING:
    from idempotent_post.decorators import idempotent
    from idempotent_post.engine import current
    from idempotent_post.operations import lookup


def __getattr__(name: str) -> Any:
    # Imported on first use: the decorator's engine needs the models, and Django
    # imports this package before the app registry is ready.
    if name == "idempotent":
        from idempotent_post.decorators import idempotent

        return idempotent
    if name == "current":
        from idempotent_post.engine import current

        return current
    if name == "lookup":
        from idempotent_post.operations import lookup

        return lookup
    raise AttributeError(f"module 'idempotent_post' has no attribute {name!r}")
