"""Sphinx extension: an "Open in Colab" badge under the title of notebook pages.

Every page whose source is an ``.ipynb`` gets, right after its title, a link to

    {colab_url}/github/{org}/{repo}/blob/{branch}/{path_to_book}/{docname}.ipynb

Nothing is hard-coded: all parts come from the Sphinx config that Jupyter Book
builds from ``_config.yml`` (``repository.url``, ``repository.branch``,
``repository.path_to_book`` and ``launch_buttons.colab_url`` end up in
``html_theme_options``). This is the URL scheme of the theme's own Colab launch
button; the badge just makes the link visible in the page body.

The badge is an inline SVG (no external image), so pages render offline.
Registered in ``_config.yml`` under ``sphinx: local_extensions:``.
"""

from __future__ import annotations

import html
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# A two-tone badge in the style of the official one, drawn inline.
_BADGE_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img" '
    'aria-hidden="true" focusable="false">'
    '<rect width="117" height="20" rx="3" fill="#555"/>'
    '<rect x="52" width="65" height="20" rx="3" fill="#f9ab00"/>'
    '<rect x="52" width="6" height="20" fill="#f9ab00"/>'
    '<g font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" fill="#fff">'
    '<text x="7" y="14">Open in</text>'
    '<text x="60" y="14" fill="#1f1f1f">Colab</text>'
    "</g></svg>"
)


def colab_url_for(config_theme: dict[str, Any], docname: str) -> str | None:
    """The Colab URL of ``docname``'s notebook, or None if not configurable.

    Only GitHub repositories can be opened by Colab's ``/github/`` route.
    """
    colab = (config_theme.get("launch_buttons") or {}).get("colab_url", "").strip("/")
    repo_url = config_theme.get("repository_url", "").strip("/")
    if repo_url.endswith(".git"):
        repo_url = repo_url[: -len(".git")]
    if not colab or not repo_url.startswith("https://github.com/"):
        return None
    org_repo = repo_url[len("https://github.com/") :]
    branch = config_theme.get("repository_branch") or "main"
    prefix = config_theme.get("path_to_docs", "").strip("/")
    path = f"{prefix}/{docname}.ipynb" if prefix else f"{docname}.ipynb"
    return f"{colab}/github/{org_repo}/blob/{branch}/{path}"


def add_badge(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Insert the badge after the first title of a notebook page."""
    if app.builder.format != "html":
        return
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    url = colab_url_for(app.config.html_theme_options, docname)
    if url is None:
        logger.warning(
            "colab_badge: no badge for %s (set repository.url to a GitHub URL "
            "and launch_buttons.colab_url in _config.yml)",
            docname,
            location=docname,
        )
        return
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not section.children or not isinstance(
        section[0], nodes.title
    ):
        return
    badge = nodes.raw(
        "",
        f'<p class="colab-badge"><a href="{html.escape(url)}" '
        f'title="Open this chapter in Google Colab" aria-label="Open in Colab">'
        f"{_BADGE_SVG}</a></p>\n",
        format="html",
    )
    section.insert(1, badge)


def setup(app: Sphinx) -> dict[str, Any]:
    # doctree-resolved runs at write time, so a changed repository URL shows up
    # without invalidating the cached doctrees.
    app.connect("doctree-resolved", add_badge)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
