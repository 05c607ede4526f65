"""Sphinx extension: the landing page's findings table and headline figure, read from the chapters.

Two directives, both filled while the book builds from the committed chapter notebooks (never typed
into ``index.md``):

``.. reprodiff-findings::``
    a table "finding / chapter / this book measured / baseline / the paper reported", one row per
    :data:`reprodiff.findings.FINDINGS` entry, the measured and baseline columns quoted from the
    chapter's headline output (:func:`reprodiff.findings.collect`); the chapter number links to that
    headline;

``.. reprodiff-figure:: 01_same_noise`` with ``:tag: landing-figure``
    the PNG that the chapter's cell with that tag displayed, inlined as a data URI (so the page
    needs no extra file and renders offline); the directive's content is the caption.

A chapter that no longer matches its pattern stops the build with the error of
:func:`reprodiff.findings.collect`. The chapter notebooks are registered as dependencies of the page,
so a re-executed chapter rebuilds it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _book_dir(directive: SphinxDirective) -> Path:
    return Path(directive.env.doc2path(directive.env.docname)).parent


def _paragraph(text: str, uri: str | None = None) -> nodes.paragraph:
    para = nodes.paragraph()
    para += nodes.reference(text, text, refuri=uri) if uri else nodes.Text(text)
    return para


class FindingsTable(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from reprodiff.findings import collect

        book = _book_dir(self)
        rows = collect(book)
        for chapter in {r["chapter"] for r in rows}:
            self.env.note_dependency(str(book / f"{chapter}.ipynb"))
        header = ("Finding", "Chapter", "This book measured (cpu profile)", "Baseline (same headline)",
                  "The paper reported")
        table = nodes.table(classes=["reprodiff-findings"])
        group = nodes.tgroup(cols=len(header))
        table += group
        for width in (20, 7, 30, 23, 20):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        row = nodes.row()
        for title in header:
            row += nodes.entry("", _paragraph(title))
        head += row
        body = nodes.tbody()
        group += body
        for r in rows:
            row = nodes.row()
            number = str(int(r["chapter"].split("_")[0]))
            for text, uri in ((r["finding"], None), (number, f"{r['chapter']}.html#headline"), (r["measured"], None),
                              (r["baseline"], None), (r["paper"], None)):
                row += nodes.entry("", _paragraph(text, uri))
            body += row
        return [table]


class NotebookFigure(SphinxDirective):
    required_arguments = 1  # the chapter's notebook stem
    option_spec = {"tag": directives.unchanged_required, "alt": directives.unchanged}
    has_content = True

    def run(self) -> list[nodes.Node]:
        from reprodiff.findings import cell_png

        notebook = _book_dir(self) / f"{self.arguments[0]}.ipynb"
        self.env.note_dependency(str(notebook))
        png = base64.b64encode(cell_png(notebook, self.options["tag"])).decode("ascii")
        alt = html.escape(self.options.get("alt", "figure from " + self.arguments[0]))
        figure = nodes.container(classes=["reprodiff-figure"])
        figure += nodes.raw("", f'<img src="data:image/png;base64,{png}" alt="{alt}" style="max-width:100%">',
                            format="html")
        if self.content:
            caption = nodes.container(classes=["reprodiff-figure-caption"])
            self.state.nested_parse(self.content, self.content_offset, caption)
            figure += caption
        return [figure]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("reprodiff-findings", FindingsTable)
    app.add_directive("reprodiff-figure", NotebookFigure)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
