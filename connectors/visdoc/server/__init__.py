"""The visdoc embedding server (``visdoc serve``; needs the ``server`` extra)."""

from .protocol import Limits, RequestError
from .settings import UISettings

__all__ = ["Limits", "RequestError", "UISettings", "create_app", "create_ui_app", "serve"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - re-exported lazily (FastAPI import)
    from .app import create_app as make

    return make(*args, **kwargs)


def create_ui_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - the search page alone
    from .ui import create_ui_app as make

    return make(*args, **kwargs)


def serve(model, *, host: str = "127.0.0.1", port: int = 8080, ui_only: bool = False, **options) -> None:  # noqa: ANN001, ANN003
    """Run the server for ``model`` until interrupted (``ui_only``: the search page ``options["ui"]`` alone)."""
    import uvicorn

    if ui_only:
        app = create_ui_app(model, options["ui"], api_key=options.get("api_key"))
    else:
        app = create_app(model, **options)
    uvicorn.run(app, host=host, port=port, log_level="warning")
