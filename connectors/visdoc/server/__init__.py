"""The visdoc embedding server (``visdoc serve``; needs the ``server`` extra)."""

from .protocol import Limits, RequestError

__all__ = ["Limits", "RequestError", "create_app", "serve"]


def create_app(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - re-exported lazily (FastAPI import)
    from .app import create_app as make

    return make(*args, **kwargs)


def serve(model, *, host: str = "127.0.0.1", port: int = 8080, **options) -> None:  # noqa: ANN001, ANN003
    """Run the server for ``model`` until interrupted."""
    import uvicorn

    uvicorn.run(create_app(model, **options), host=host, port=port, log_level="warning")
