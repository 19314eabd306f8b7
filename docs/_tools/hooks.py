"""MkDocs hooks: pages link files of the repository outside ``docs/`` (the committed benchmark
results, the README) as ``../PATH``, so that the links work as plain Markdown on GitHub. For the
site, each such file that exists is copied into the build under ``_repo/PATH`` as it is (a
Markdown file stays a static file, not a page) and the links are rewritten to it. A link to a
file that does not exist stays as written, and ``mkdocs build --strict`` fails on it."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "_repo"
LINK = re.compile(r"\]\(\.\./([^)\s#]+)")
#: a note for GitHub readers of the API pages, dropped from the site (where the API is rendered)
GITHUB_NOTE = re.compile(r" ?\(The `:::` lines below are rendered from the docstrings[^)]*\)")


class RepoFile(File):
    """A repository file copied into the site unchanged (never rendered as a page)."""

    def is_documentation_page(self) -> bool:
        return False

    def is_static_page(self) -> bool:
        return False

    def is_media_file(self) -> bool:
        return True


def _targets(docs: Path) -> set[str]:
    found: set[str] = set()
    for page in docs.rglob("*.md"):
        for rel in LINK.findall(page.read_text(encoding="utf-8")):
            path = (ROOT / rel).resolve()
            if path.is_file() and ROOT in path.parents and docs not in path.parents:
                found.add(path.relative_to(ROOT).as_posix())
    return found


def on_files(files: Files, config) -> Files:
    """Add every repository file a page links to (``../PATH``) under ``_repo/PATH``."""
    for rel in sorted(_targets(Path(config["docs_dir"]).resolve())):
        files.append(RepoFile.generated(config, f"{PREFIX}/{rel}", abs_src_path=str(ROOT / rel)))
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    """``](../PATH`` -> ``](_repo/PATH`` (relative to the page) for the files added above."""
    up = "../" * page.file.src_uri.count("/")

    def sub(m: re.Match) -> str:
        rel = m.group(1)
        if files.get_file_from_path(f"{PREFIX}/{rel}") is None:
            return m.group(0)
        return f"]({up}{PREFIX}/{rel}"

    return GITHUB_NOTE.sub("", LINK.sub(sub, markdown))
