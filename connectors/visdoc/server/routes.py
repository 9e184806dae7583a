"""The server's URLs, declared once: the route templates :mod:`.app` and :mod:`.ui` serve and the
links :mod:`.results` hands out (placeholders are the route functions' parameter names). The
embedding API's paths are the client's too: :mod:`visdoc.encoder.wire`."""

from __future__ import annotations

from urllib.parse import quote

HEALTH = "/health"
METRICS = "/metrics"

UI_PREFIX = "/ui"
FILES_PREFIX = "/files"
API = f"{UI_PREFIX}/api"

ROOT = "/"
PAGE = UI_PREFIX
PAGE_SLASH = f"{UI_PREFIX}/"
ASSET = f"{UI_PREFIX}/static/{{name}}"
CONFIG = f"{API}/config"
SESSION = f"{API}/session"
COLLECTIONS = f"{API}/collections"
DOCUMENTS = f"{COLLECTIONS}/{{name}}/documents"
SEARCH = f"{COLLECTIONS}/{{name}}/search"
HEATMAP = f"{COLLECTIONS}/{{name}}/pages/{{point_id}}/heatmap"
PAGE_IMAGE = f"{COLLECTIONS}/{{name}}/pages/{{point_id}}/image"
UPLOADS = f"{COLLECTIONS}/{{name}}/uploads"
JOBS = f"{API}/jobs"
JOB = f"{JOBS}/{{job_id}}"
SOURCE_FILE = f"{FILES_PREFIX}/{{name}}/{{document_id}}/{{file_name}}"


def page_image_url(name: str, point_id: str, size: str) -> str:
    """The link to page ``point_id``'s image at ``size`` (``thumb`` or ``page``)."""
    return PAGE_IMAGE.format(name=name, point_id=point_id) + f"?size={size}"


def heatmap_url(name: str, point_id: str) -> str:
    """The link to page ``point_id``'s heatmap (the client adds ``?q=``)."""
    return HEATMAP.format(name=name, point_id=point_id)


def source_file_url(name: str, document_id: str, file_name: str, page: int | None = None) -> str:
    """The link to a document's source file, opened at ``page`` (0-based) for a PDF."""
    url = SOURCE_FILE.format(name=name, document_id=document_id, file_name=quote(file_name))
    if page is not None and file_name.lower().endswith(".pdf"):
        url += f"#page={page + 1}"
    return url
