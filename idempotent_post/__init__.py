"""Make POST safe to retry: ``Idempotency-Key`` for APIs, Post/Redirect/Get for forms."""

from typing import TYPE_CHECKING, Any

__all__ = [
    "InProgress",
    "KeyMismatch",
    "current",
    "idempotent",
    "idempotent_function",
    "lookup",
]

if TYPE_CHECKING:
    from idempotent_post.decorators import idempotent
    from idempotent_post.engine import current
    from idempotent_post.functions import InProgress, KeyMismatch, idempotent_function
    from idempotent_post.operations import lookup

# Where each public name lives; imported on first use: the engine needs the models, and
# Django imports this package before the app registry is ready.
_LOCATIONS = {
    "idempotent": "idempotent_post.decorators",
    "current": "idempotent_post.engine",
    "idempotent_function": "idempotent_post.functions",
    "InProgress": "idempotent_post.functions",
    "KeyMismatch": "idempotent_post.functions",
    "lookup": "idempotent_post.operations",
}


def __getattr__(name: str) -> Any:
    if name in _LOCATIONS:
        from importlib import import_module

        return getattr(import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'idempotent_post' has no attribute {name!r}")
