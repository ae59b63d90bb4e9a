"""Every relative link in the project's Markdown points to a file of the repository (issue 12).

Someone who clones the project has the repository and nothing else: a link to ``../shared/…`` or to a file that was
renamed leads them nowhere. So, for every Markdown file git tracks (or would track: new files not yet added count
too, ignored ones do not), every inline link and image ``[text](target)`` and every reference definition
``[label]: target`` must

- name an existing file or directory of the repository (``#anchor`` and ``?query`` stripped, ``%20`` decoded; a
  target starting with ``/`` is taken from the repository's root, as GitHub does);
- not climb out of the repository (``../`` above the root);
- when it carries an anchor into a Markdown file (``#x`` alone means the same file), name a heading of that file,
  by GitHub's rule for heading ids.

``http://``, ``https://`` and ``mailto:`` links are not checked; any other scheme (``file:``, …) is refused. Text
inside fenced code blocks and inline code spans is not a link and is skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_DIRS = {".git", ".venv", "var", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache"}

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target may be <wrapped> and followed by a "title".
_INLINE_LINK = re.compile(r"\]\(\s*(<[^>\n]*>|[^\s)]*)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[(?:[^\]\\]|\\.)+\]:\s*(<[^>\n]*>|\S+)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_UNCHECKED_SCHEMES = ("http:", "https:", "mailto:")


@dataclass(frozen=True)
class Link:
    line: int
    target: str


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The Markdown files of the repository: those git tracks plus new ones it would track, or (without git) every
    ``*.md`` outside the virtualenv, ``var/`` and caches."""
    git = shutil.which("git")
    if (root / ".git").exists() and git:
        listed = subprocess.run(  # noqa: S603 (a fixed command line)
            [git, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
        return sorted({root / name for name in listed.split("\0") if name and (root / name).is_file()})
    return sorted(
        path
        for path in root.rglob("*.md")
        if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(root).parts[:-1])
    )


def _prose_lines(text: str, *, blank_code_spans: bool = True):
    """(line number, line) for every line outside fenced code blocks, with inline code spans blanked out."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        opening = _FENCE.match(line)
        if fence is None:
            if opening:
                fence = opening.group(1)
                continue
            yield number, _CODE_SPAN.sub(lambda span: " " * len(span.group(0)), line) if blank_code_spans else line
        elif (
            opening
            and opening.group(1)[0] == fence[0]
            and len(opening.group(1)) >= len(fence)
            and not line.strip().lstrip(fence[0])  # a closing fence carries no info string
        ):
            fence = None


def links_in(text: str) -> list[Link]:
    found = []
    for number, line in _prose_lines(text):
        definition = _REFERENCE_DEFINITION.match(line)
        if definition:
            found.append(Link(number, definition.group(1)))
            continue
        found.extend(Link(number, match.group(1)) for match in _INLINE_LINK.finditer(line))
    return [Link(link.line, link.target.removeprefix("<").removesuffix(">")) for link in found]


def heading_ids(text: str) -> set[str]:
    """The ids GitHub gives the headings of a Markdown text: the heading's text in lower case, without punctuation
    (letters, digits, ``-``, ``_`` and spaces stay), spaces as ``-``; a repeated id gets ``-1``, ``-2``, …"""
    ids: set[str] = set()
    seen: dict[str, int] = {}
    for _number, line in _prose_lines(text, blank_code_spans=False):
        heading = _HEADING.match(line)
        if not heading:
            continue
        title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(2))  # a link's text
        title = re.sub(r"<[^>]+>", "", title).replace("`", "")
        title = re.sub(r"(\*{1,3}|\b_{1,3}|_{1,3}\b)", "", title)  # emphasis markers, not snake_case underscores
        slug = "".join(
            char for char in unicodedata.normalize("NFC", title.lower()) if char.isalnum() or char in "-_ "
        ).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def problem_of(link: Link, source: Path, root: Path = ROOT) -> str | None:
    """Why ``link`` in the Markdown file ``source`` leads nowhere, or None when it is fine."""
    target = link.target
    if not target:
        return "an empty link"
    if target.lower().startswith(_UNCHECKED_SCHEMES):
        return None
    if _SCHEME.match(target) or target.startswith("//"):
        return "links outside the repository (only relative links, http(s) and mailto are allowed)"
    path_part, _, anchor = target.partition("#")
    path_part = unquote(path_part.partition("?")[0])
    if not path_part:
        destination = source
    else:
        base = root if path_part.startswith("/") else source.parent
        resolved = (base / path_part.lstrip("/")).resolve()
        if not resolved.is_relative_to(root.resolve()):
            return "leaves the repository"
        if not resolved.exists():
            return "points to nothing"
        destination = resolved
    if (
        anchor
        and destination.suffix.lower() == ".md"
        and destination.is_file()
        and unquote(anchor).lower() not in heading_ids(destination.read_text(encoding="utf-8"))
    ):
        return f"no heading of {destination.relative_to(root.resolve()).as_posix()} has the id #{anchor}"
    return None


def broken_links(source: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for link in links_in(source.read_text(encoding="utf-8")):
        problem = problem_of(link, source.resolve(), root)
        if problem:
            problems.append(f"{source.relative_to(root).as_posix()}:{link.line}: ({link.target}) {problem}")
    return problems


@pytest.mark.parametrize("source", markdown_files(), ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_a_file_of_the_repository(source):
    assert broken_links(source) == []


def test_the_project_documents_itself():
    names = {path.relative_to(ROOT).as_posix() for path in markdown_files()}
    assert {"README.md", "docs/README.md"} <= names


# The checker itself, on a throw-away repository: each rule can fail.


@pytest.fixture
def repository(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Signing in to the API\n\n## `orgAccess` and *roles*\n")
    (tmp_path / "bench").mkdir()
    return tmp_path


def _problems(repository: Path, text: str) -> list[str]:
    source = repository / "README.md"
    source.write_text(text)
    return broken_links(source, repository)


def test_a_link_to_an_existing_file_or_directory_passes(repository):
    text = '[guide](docs/guide.md), [also](./docs/guide.md "title"), [dir](bench/), ![img](<docs/guide.md>)\n'
    assert _problems(repository, text) == []


def test_a_link_to_a_missing_file_fails(repository):
    assert _problems(repository, "See [the spec](docs/spec.md).\n") == ["README.md:1: (docs/spec.md) points to nothing"]


def test_a_link_leaving_the_repository_fails(repository):
    (repository.parent / "shared.md").write_text("outside")
    assert _problems(repository, "[spec](../shared.md)\n") == ["README.md:1: (../shared.md) leaves the repository"]
    assert _problems(repository, "[spec](file:///etc/passwd)\n") != []


def test_a_reference_definition_is_checked(repository):
    assert _problems(repository, "[spec][s]\n\n[s]: docs/missing.md\n") == [
        "README.md:3: (docs/missing.md) points to nothing"
    ]


def test_code_is_not_a_link(repository):
    text = "```md\n[spec](../shared/spec/x.md)\n```\n\n`[spec](missing.md)` and ~~~\n"
    assert _problems(repository, text) == []


def test_web_and_mail_links_are_not_checked(repository):
    assert _problems(repository, "[a](https://example.com/x) [b](http://h/) [c](mailto:a@example.com)\n") == []


def test_anchors_name_headings(repository):
    good = "[a](docs/guide.md#signing-in-to-the-api) [b](docs/guide.md#orgaccess-and-roles) [c](#top)\n\n# Top\n"
    assert _problems(repository, good) == []
    assert _problems(repository, "[a](docs/guide.md#signing-in)\n") == [
        "README.md:1: (docs/guide.md#signing-in) no heading of docs/guide.md has the id #signing-in"
    ]
    assert _problems(repository, "[a](#nowhere)\n") != []


def test_repeated_headings_get_numbered_ids():
    assert heading_ids("# Errors\n\n## Errors\n\n### Errors\n") == {"errors", "errors-1", "errors-2"}
