"""The README and the pages under docs/ link to each other and to files of the repository; a page
that moves, a heading that is renamed or a file that goes away would leave dead links that
nothing else notices. These tests read the markdown (no network, no renderer) and check every
relative link: its file exists in the repository, and its ``#anchor`` names a heading of the
target page under GitHub's slug rules. The README also has to stay a front page: short, and
linking every docs page."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

# An inline link or image: [text](target) or [text](target "title"), the text possibly wrapped
# over lines and holding one level of brackets; the target possibly in <...>.
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
                    r"\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+\"[^\"\n]*\")?\s*\)")
# A reference definition: [label]: target
REFERENCE = re.compile(r"^ {0,3}\[[^\]\n]+\]:\s*(<[^>\n]*>|\S+)", re.MULTILINE)
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


@dataclass(frozen=True)
class Link:
    """A relative link found in a page: where it is and what it points to."""

    page: Path
    line: int
    target: str


def _blank_code(text: str, spans: bool = True) -> str:
    """The text with fenced blocks (and code spans, unless `spans` is false) replaced by spaces,
    newlines kept, so that offsets still give line numbers and nothing inside code is read as a
    link or a heading. Headings keep their spans: GitHub's anchor includes a span's text."""
    out: list[str] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)[0] * len(match.group(1))
            out.append(_spaces(line))
        elif fence is not None:
            if line.strip().startswith(fence) and set(line.strip()) <= {fence[0]}:
                fence = None
            out.append(_spaces(line))
        else:
            out.append(_blank_spans(line) if spans else line)
    return "".join(out)


def _spaces(line: str) -> str:
    return re.sub(r"[^\n]", " ", line)


def _blank_spans(line: str) -> str:
    """Code spans of one line (`x`, ``x``) blanked; a span's backticks must match in number."""
    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group(0))
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", blank, line)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text without markup, lowercased, every character
    that is not a letter, digit, space, hyphen or underscore dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)                            # inline HTML tags
    text = text.strip().lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a markdown page's ATX headings; a repeated slug gets -1, -2, ... as on
    GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in _blank_code(page.read_text(encoding="utf-8"), spans=False).splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def links(page: Path) -> list[Link]:
    """The relative links of a page (external schemes and code left out), in order."""
    text = _blank_code(page.read_text(encoding="utf-8"))
    found = []
    for pattern in (INLINE, REFERENCE):
        for match in pattern.finditer(text):
            target = match.group(1).strip("<>")
            if not target or EXTERNAL.match(target):
                continue
            line = text.count("\n", 0, match.start()) + 1
            found.append(Link(page, line, target))
    return sorted(found, key=lambda link: link.line)


def _ignored(root: Path, path: Path) -> bool:
    """True when git ignores the path: it may exist here after a run but not in a clone."""
    if shutil.which("git") is None or not (root / ".git").exists():
        return False
    done = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(path)],
                          capture_output=True, check=False)
    return done.returncode == 0


def broken_links(root: Path, pages: list[Path]) -> list[str]:
    """One `page:line -> target (why)` for every link of the pages that does not resolve."""
    broken = []
    root = root.resolve()
    cache: dict[Path, set[str]] = {}
    for page in pages:
        for link in links(page):
            path_part, _, anchor = link.target.partition("#")
            target = (page.parent / unquote(path_part)).resolve() if path_part else page.resolve()
            where = f"{page.relative_to(root)}:{link.line} -> {link.target}"
            if not target.is_relative_to(root):
                broken.append(f"{where} (outside the repository)")
            elif not target.exists():
                broken.append(f"{where} (no such file)")
            elif _ignored(root, target):
                broken.append(f"{where} (ignored by git: not in a clone)")
            elif anchor:
                if target.suffix != ".md":
                    broken.append(f"{where} (an anchor into a file that is not markdown)")
                    continue
                if target not in cache:
                    cache[target] = anchors(target)
                if unquote(anchor) not in cache[target]:
                    broken.append(f"{where} (no heading with that anchor)")
    return broken


def _pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def test_every_link_of_the_readme_and_docs_resolves():
    broken = broken_links(REPO, _pages())
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_checker_catches_a_broken_file_and_a_broken_anchor(tmp_path):
    """The checker itself can fail: a missing file, a missing anchor in another page and in the
    same page are found, with their lines; good links, code and external links are not."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text(
        "# Other page\n\n## What it finds, against paper A\n\n## Twice\n\n## Twice\n")
    page = tmp_path / "README.md"
    page.write_text(
        "# Front\n"
        "[good](docs/other.md) and [good anchor](docs/other.md#what-it-finds-against-paper-a)\n"
        "[second of two](docs/other.md#twice-1) [self](#front)\n"
        "[gone](docs/missing.md)\n"
        "[bad anchor](docs/other.md#what-it-finds)\n"
        "[bad self](#nowhere) [web](https://example.org/x.md) [mail](mailto:a@b.c)\n"
        "`[in code](docs/missing.md)`\n"
        "```\n[in a fence](docs/missing.md)\n```\n"
        "[wrapped\ntext](docs/other.md#no-such)\n")
    assert broken_links(tmp_path, [page]) == [
        "README.md:4 -> docs/missing.md (no such file)",
        "README.md:5 -> docs/other.md#what-it-finds (no heading with that anchor)",
        "README.md:6 -> #nowhere (no heading with that anchor)",
        "README.md:11 -> docs/other.md#no-such (no heading with that anchor)",
    ]


def test_github_slugs():
    assert github_slug("Paper B's stabiliser on the same recipe") == \
        "paper-bs-stabiliser-on-the-same-recipe"
    assert github_slug("The stacked step (`lmcpipe.training`)") == \
        "the-stacked-step-lmcpipetraining"
    assert github_slug("Two commands (fresh Debian/Ubuntu machine, Python ≥ 3.10)") == \
        "two-commands-fresh-debianubuntu-machine-python--310"
    assert github_slug("[Linked](x.md) heading_with_underscore") == \
        "linked-heading_with_underscore"


def test_the_readme_stays_a_front_page():
    lines = len((REPO / "README.md").read_text(encoding="utf-8").splitlines())
    assert lines < README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES - 1}): move the detail into docs/")


def test_the_readme_links_every_docs_page_and_each_links_back():
    readme = {(REPO / link.target.partition("#")[0]).resolve()
              for link in links(REPO / "README.md") if link.target.partition("#")[0]}
    pages = sorted((REPO / "docs").glob("*.md"))
    assert pages, "docs/ has no pages"
    unlisted = [p.name for p in pages if p.resolve() not in readme]
    assert not unlisted, f"docs pages the README does not link: {unlisted}"
    no_way_back = [p.name for p in pages
                   if not any(link.target.partition("#")[0] == "../README.md"
                              for link in links(p))]
    assert not no_way_back, f"docs pages without a link back to ../README.md: {no_way_back}"
