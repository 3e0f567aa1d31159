"""A tiny name -> factory registry, for the names users type on the command line.

Example:
    >>> models = Registry("model")
    >>> @models.register("tiny")
    ... def tiny() -> str:
    ...     return "a tiny model"
    >>> models.create("tiny")
    'a tiny model'
    >>> models.names()
    ['tiny']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from densecal.errors import input_error

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Map user-facing names to factories (the ``register_model`` / ``create_model`` pattern)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; raises on a duplicate name."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories)

    def get(self, name: str) -> Callable[..., T]:
        """The factory for ``name``.

        Raises:
            DensecalInputError: ``name`` is not registered (the message lists the valid names).
        """
        try:
            return self._factories[name]
        except KeyError:
            raise input_error(f"--{self.kind}", f"unknown {self.kind} {name!r}; choose one of "
                              f"{', '.join(self.names())}") from None

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the object registered under ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)
