"""Real-browser checks of the built book in _build/html.

The book must be built first (`make test` does it; by hand:
``jupyter-book build . -W --keep-going`` from the repository root). A missing
build is a failure, not a skip, so CI cannot pass without the book.

Headless Chromium (``scripts/ensure-chromium.sh`` installs it) renders the
pages offline: every host name resolves to nothing, so a page that needs a
CDN shows it here. ``--dump-dom`` gives the DOM after JavaScript ran;
``--screenshot`` of chapter 1 goes to ``_build/screenshots/``. No page may
load a script from a CDN: the widget JS and MathJax are vendored under
``book/_extra/`` (``scripts/fetch-widget-js.sh``, ``scripts/fetch-mathjax.sh``).
The expected Colab URL is derived from ``_config.yml``, the one place the
repository URL is configured.
"""

from __future__ import annotations

import shutil
import re
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HTML_DIR = REPO / "_build" / "html"
SCREENSHOT_DIR = REPO / "_build" / "screenshots"
CHAPTER = "book/01_same_noise"  # docname: path under the repo root, no suffix
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no request leaves the machine
    "--virtual-time-budget=5000",  # let deferred JS (theme, widgets) finish
    "--window-size=1280,2000",
]
CDN_HOSTS = ("unpkg.com", "jsdelivr.net", "cdnjs.cloudflare.com")  # and their subdomains
WIDGET_JS_HINTS = ("require.js", "require.min.js", "@jupyter-widgets", "html-manager", "embed-amd")
NON_TEXT_TAGS = {"script", "style", "pre", "code", "textarea"}  # not prose: may hold a literal \(
VOID_TAGS = {
    "area", "base", "br", "col", "embed", "hr", "img", "input",
    "link", "meta", "param", "source", "track", "wbr",
}


class Element:
    def __init__(self, tag: str, attrs: dict[str, str], ancestors: list["Element"]):
        self.tag = tag
        self.attrs = attrs
        self.ancestors = ancestors  # outermost first
        self.classes = set(attrs.get("class", "").split())

    def inside(self, css_class: str) -> bool:
        return any(css_class in a.classes for a in self.ancestors)


class DomIndex(HTMLParser):
    """Every element of a page with its attributes and open ancestors."""

    def __init__(self, markup: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.texts: list[tuple[str, list[Element]]] = []  # text nodes, open ancestors
        self._open: list[Element] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag, attrs):
        el = Element(tag, {k: v or "" for k, v in attrs}, list(self._open))
        self.elements.append(el)
        if tag not in VOID_TAGS:
            self._open.append(el)

    def handle_startendtag(self, tag, attrs):
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, list(self._open)))

    def handle_data(self, data):
        self.texts.append((data, list(self._open)))

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                break

    def find(self, tag: str) -> list[Element]:
        return [e for e in self.elements if e.tag == tag]

    def prose(self) -> str:
        """The page's visible text, without scripts, styles and code."""
        return "".join(
            data for data, ancestors in self.texts
            if not any(a.tag in NON_TEXT_TAGS for a in ancestors)
        )


def is_cdn(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return any(host == h or host.endswith("." + h) for h in CDN_HOSTS)


def expected_colab_url(docname: str) -> str:
    """The Colab URL of a chapter, built from _config.yml like the theme does."""
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    repo_url = config["repository"]["url"].rstrip("/").removesuffix(".git")
    assert repo_url.startswith("https://github.com/"), (
        f"_config.yml repository.url must be a GitHub URL for Colab, got {repo_url!r}"
    )
    branch = config["repository"].get("branch", "main")
    book_path = (config["repository"].get("path_to_book") or "").strip("/")
    colab = config["launch_buttons"]["colab_url"].rstrip("/")
    path = f"{book_path}/{docname}.ipynb" if book_path else f"{docname}.ipynb"
    return f"{colab}/github/{repo_url.removeprefix('https://github.com/')}/blob/{branch}/{path}"


@pytest.fixture(scope="module")
def html_dir() -> Path:
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(
            f"{HTML_DIR / 'index.html'} is missing: build the book first "
            "(`make test` does; by hand: `jupyter-book build . -W --keep-going` "
            "from the repository root)."
        )
    return HTML_DIR


@pytest.fixture(scope="module")
def browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "No headless browser found (looked for " + ", ".join(BROWSERS) + "): "
        "run scripts/ensure-chromium.sh."
    )


def run_browser(browser: str, page: Path, *action: str, window: str | None = None) -> str:
    assert page.is_file(), f"{page} is missing from the build"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [browser, *(f for f in CHROMIUM_FLAGS if not (window and f.startswith("--window-size"))),
             *([f"--window-size={window}"] if window else []), f"--user-data-dir={profile}", *action, page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, (
        f"{Path(browser).name} failed on {page} (exit {result.returncode}):\n"
        + result.stderr[-2000:]
    )
    return result.stdout


@pytest.fixture(scope="module")
def index_dom(browser: str, html_dir: Path) -> DomIndex:
    # _build/html/index.html only redirects to the root document, book/index.html.
    return DomIndex(run_browser(browser, html_dir / "book" / "index.html", "--dump-dom"))


@pytest.fixture(scope="module")
def chapter_page(html_dir: Path) -> Path:
    return html_dir / f"{CHAPTER}.html"


@pytest.fixture(scope="module")
def chapter_dom(browser: str, chapter_page: Path) -> DomIndex:
    return DomIndex(run_browser(browser, chapter_page, "--dump-dom"))


def test_sidebar_lists_every_chapter(index_dom: DomIndex):
    links = [
        a.attrs.get("href", "")
        for a in index_dom.find("a")
        if a.inside("bd-docs-nav") or a.inside("bd-sidebar-primary")
    ]
    chapters = sorted(p.stem for p in (REPO / "book").glob("[0-9][0-9]_*.ipynb"))
    assert chapters and Path(CHAPTER).name in chapters
    for name in chapters:
        target = name + ".html"
        assert any(urlparse(h).path.endswith(target) for h in links), (
            f"The sidebar of book/index.html has no link to {target}; sidebar links: {links}. "
            "Is the chapter listed in _toc.yml?"
        )


def test_landing_page_shows_the_chapters_measurements_and_figure(index_dom: DomIndex):
    """The findings table and headline figure are filled from the committed notebooks at build time
    (book/_ext/landing.py): each row's measured text is on the page, and the figure is inlined."""
    from reprodiff.findings import collect

    # Sphinx typesets straight apostrophes as curly ones (docutils' smart quotes)
    cells = [" ".join(data.split()).replace("\u2019", "'") for data, ancestors in index_dom.texts
             if any("reprodiff-findings" in a.attrs.get("class", "") for a in ancestors) and data.strip()]
    for row in collect(REPO / "book"):
        assert row["measured"] in cells, (
            f"The landing page's findings table does not show {row['measured']!r} from {row['chapter']}: "
            "rebuild the book after executing the chapter")
    figures = [img for img in index_dom.find("img") if img.inside("reprodiff-figure")]
    assert len(figures) == 1 and figures[0].attrs["src"].startswith("data:image/png;base64,")


def rendered_images(dom: DomIndex, page: Path, html_dir: Path) -> list[tuple[Path, int]]:
    """``(file, size)`` of every <img> of ``page`` that points to a file in _build/html/_images/."""
    images = []
    for img in dom.find("img"):
        src = unquote(urlparse(img.attrs.get("src", "")).path)
        if not src:
            continue
        file = (page.parent / src).resolve()
        if file.parent == (html_dir / "_images").resolve() and file.is_file():
            images.append((file, file.stat().st_size))
    return images


def test_explorer_chapter_shows_its_static_gallery(browser: str, html_dir: Path):
    """Chapter 9's live explorer needs a kernel; the static page must show the precomputed gallery
    and the other figures instead (every <img> a non-empty file in _images)."""
    page = html_dir / "book" / "09_explorer.html"
    images = rendered_images(DomIndex(run_browser(browser, page, "--dump-dom")), page, html_dir)
    # gallery, two interpolation paths, the agreement curve and the audit's copies
    assert sum(size > 0 for _, size in images) >= 5, f"09_explorer.html shows {len(images)} rendered figures"


def test_chapter_1_has_a_figure(chapter_dom: DomIndex, chapter_page: Path, html_dir: Path):
    images = rendered_images(chapter_dom, chapter_page, html_dir)
    # chapter 1 shows the training digits, the same-noise grid and the similarity histogram
    assert sum(size > 0 for _, size in images) >= 3, (
        f"{chapter_page.name} shows fewer than 3 rendered figures: too few <img> point to a non-empty "
        "file in _build/html/_images/. Was the chapter notebook executed and saved with "
        f"its outputs before the build? Images found: {images}"
    )


def test_chapter_1_has_colab_launch_button(chapter_dom: DomIndex):
    url = expected_colab_url(CHAPTER)
    hrefs = [a.attrs.get("href", "") for a in chapter_dom.find("a")]
    assert url in hrefs, (
        f"No link to {url} in {CHAPTER}.html. The theme's Colab button needs "
        "launch_buttons.colab_url and repository.url in _config.yml and the "
        f"{CHAPTER}.ipynb source; Colab links found: "
        f"{[h for h in hrefs if 'colab' in h]}"
    )


def test_chapter_1_has_colab_badge(chapter_dom: DomIndex):
    url = expected_colab_url(CHAPTER)
    badges = [a.attrs.get("href") for a in chapter_dom.find("a") if a.inside("colab-badge")]
    assert badges == [url], (
        f"Expected one 'Open in Colab' badge (book/_ext/colab_badge.py) linking to {url}, "
        f"found {badges}"
    )


def test_widget_js_is_self_hosted(chapter_dom: DomIndex, chapter_page: Path):
    srcs = [s.attrs["src"] for s in chapter_dom.find("script") if s.attrs.get("src")]
    from_cdn = [
        s for s in srcs
        if is_cdn(s) and any(h in s for h in WIDGET_JS_HINTS)
    ]
    assert not from_cdn, (
        f"{chapter_page.name} loads widget JavaScript from a CDN: {from_cdn}. "
        "Set sphinx.config.nb_ipywidgets_js in _config.yml to the vendored copies "
        "(scripts/fetch-widget-js.sh)."
    )
    for src in srcs:
        if any(h in src for h in WIDGET_JS_HINTS) and not urlparse(src).scheme:
            file = (chapter_page.parent / unquote(urlparse(src).path)).resolve()
            assert file.is_file(), f"{chapter_page.name} loads {src}, missing from the build"


def test_widgets_render_offline(chapter_dom: DomIndex, chapter_page: Path):
    views = [
        s for s in chapter_dom.find("script")
        if s.attrs.get("type") == "application/vnd.jupyter.widget-view+json"
    ]
    if not views:
        return  # the chapter has no widgets: nothing to render
    rendered = [e for e in chapter_dom.elements if "jupyter-widgets" in e.classes]
    assert rendered, (
        f"{chapter_page.name} has {len(views)} widget view(s) but none rendered offline: "
        "is the vendored widget JS (book/_extra/_widgets) served and loaded?"
    )


def test_no_script_from_a_cdn(chapter_dom: DomIndex, chapter_page: Path):
    # The dumped DOM also holds the scripts that JavaScript added at runtime
    # (e.g. components MathJax loads on demand).
    srcs = [s.attrs["src"] for s in chapter_dom.find("script") if s.attrs.get("src")]
    from_cdn = [s for s in srcs if is_cdn(s)]
    assert not from_cdn, (
        f"{chapter_page.name} loads JavaScript from a CDN ({', '.join(CDN_HOSTS)}): "
        f"{from_cdn}. Offline readers get none of it; vendor it under book/_extra/ "
        "(MathJax: sphinx.config.mathjax_path in _config.yml, scripts/fetch-mathjax.sh)."
    )
    for src in srcs:
        url = urlparse(src)
        if not url.scheme and not url.netloc:
            file = (chapter_page.parent / unquote(url.path)).resolve()
            assert file.is_file(), f"{chapter_page.name} loads {src}, missing from the build"


def test_chapter_1_math_renders_offline(chapter_dom: DomIndex, chapter_page: Path):
    built = DomIndex(chapter_page.read_text(encoding="utf-8"))
    sources = [e for e in built.elements if "math" in e.classes and e.tag in ("span", "div")]
    assert sources, (
        f"{chapter_page.name} has no math (no span/div.math in the built page): "
        "this check expects chapter 1 to contain $...$ math."
    )
    rendered = chapter_dom.find("mjx-container")
    prose = chapter_dom.prose()
    raw = [d for d in ("\\(", "\\[") if d in prose]
    assert rendered and not raw, (
        f"{chapter_page.name}: MathJax did not typeset the math offline "
        f"({len(sources)} math element(s), {len(rendered)} mjx-container(s), raw TeX "
        f"delimiters {raw} left in the text). Is sphinx.config.mathjax_path in _config.yml "
        "the vendored copy (book/_extra/_mathjax, scripts/fetch-mathjax.sh)?"
    )
    assert len(rendered) >= len(sources), (
        f"{chapter_page.name}: only {len(rendered)} of {len(sources)} math elements "
        "were typeset by MathJax."
    )
    errors = chapter_dom.find("mjx-merror")
    assert not errors, (
        f"{chapter_page.name}: MathJax reported {len(errors)} TeX error(s) "
        "(mjx-merror); an unknown macro or a missing extension?"
    )


def test_chapter_1_screenshot(browser: str, chapter_page: Path):
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOT_DIR / f"{Path(CHAPTER).name}.png"
    shot.unlink(missing_ok=True)
    # tall enough to show the sidebar, the same-noise grid and the histogram in one picture
    run_browser(browser, chapter_page, f"--screenshot={shot}", window="1280,5600")
    assert shot.is_file() and shot.stat().st_size > 0, f"No screenshot written to {shot}"


def test_chapter_prose_renders_as_paragraphs(browser: str, html_dir: Path):
    """Markdown that renders by accident: a line starting with '>' inside a paragraph becomes a block
    quote, and an unclosed '*' shows literally. The book uses neither on purpose."""
    for page in sorted((html_dir / "book").glob("[0-9][0-9]_*.html")):
        dom = DomIndex(run_browser(browser, page, "--dump-dom"))
        quotes = [e for e in dom.find("blockquote") if e.inside("bd-article")]
        assert not quotes, f"{page.name} renders {len(quotes)} block quote(s): a prose line starts with '>'"
        stray = [t.strip() for t, anc in dom.texts
                 if re.search(r"(^|\s)\*\w", t)  # an emphasis that never opened: "*Mirrors" shown as is
                 and not any(a.tag in NON_TEXT_TAGS or a.tag.startswith("mjx") or "math" in a.classes for a in anc)
                 and any(a.inside("bd-article") or "bd-article" in a.classes for a in anc)]
        assert not stray, f"{page.name} shows a literal '*' (unbalanced emphasis?): {stray[:3]}"
