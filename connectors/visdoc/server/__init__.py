"""The visdoc embedding server (``visdoc serve``; needs the ``server`` extra)."""

from .protocol import Limits, RequestError
from .settings import UISettings

__all__ = ["Limits", "RequestError", "UISettings", "check_exposure", "create_app", "create_ui_app", "serve"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - re-exported lazily (FastAPI import)
    from .app import create_app as make

    return make(*args, **kwargs)


def create_ui_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - the search page alone
    from .ui import create_ui_app as make

    return make(*args, **kwargs)


def check_exposure(host: str, port: int, api_key: str | None, *, allow_no_key: bool = False,
                   ui_only: bool = False) -> None:  # fmt: skip
    """Refuse (:class:`~visdoc.VisdocError`) to listen on a non-loopback ``host`` without ``api_key``,
    unless ``allow_no_key`` says so explicitly. ``localhost``, 127.x and ``::1`` are loopback."""
    from ..errors import VisdocError
    from .validation import is_loopback_host

    if api_key or allow_no_key or is_loopback_host(host):
        return
    exposed = ("other machines would get 403 from the search page, which without a key answers only this one"
               if ui_only else "the embedding API would answer anyone who can reach the port")  # fmt: skip
    raise VisdocError(
        f"refusing to listen on {host!r} (port {port}) without an API key: {exposed}. Set a key with --api-key "
        "or $VISDOC_API_KEY, or pass --allow-no-key to start without one"
    )


def serve(model, *, host: str = "127.0.0.1", port: int = 8080, ui_only: bool = False, allow_no_key: bool = False,
          **options) -> None:  # noqa: ANN001, ANN003  # fmt: skip
    """Run the server for ``model`` until interrupted (``ui_only``: the search page ``options["ui"]`` alone).

    Without ``options["api_key"]``, a non-loopback ``host`` needs ``allow_no_key`` (see :func:`check_exposure`)."""
    import uvicorn

    check_exposure(host, port, options.get("api_key"), allow_no_key=allow_no_key, ui_only=ui_only)
    if ui_only:
        app = create_ui_app(model, options["ui"], api_key=options.get("api_key"))
    else:
        app = create_app(model, **options)
    uvicorn.run(app, host=host, port=port, log_level="warning")
