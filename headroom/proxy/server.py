"""The app ASGI servers load: ``headroom.proxy.server:app``.

Built on first access, not at import, and configured from ``HEADROOM_*`` variables (see
:mod:`headroom.proxy.asgi`): importing this module costs nothing, and ``headroom proxy``
never does, since it builds its own app from its flags (:func:`headroom.proxy.factory.create_app`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sanic import Sanic

app: Sanic  # declared, not assigned: the first access goes to __getattr__ below


def __getattr__(name: str) -> Any:
    if name == "app":
        from headroom.proxy.asgi import create_asgi_app

        global app
        app = create_asgi_app()
        return app
    raise AttributeError(name)
