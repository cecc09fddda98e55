"""Every citation resolves inside the repository (issue 11): the real system's public contracts
are written down in docs/reference/, with their sources, and the code and docs cite those pages;
nothing points at a file the repository does not have."""

from __future__ import annotations

import pathlib
import re
import subprocess

TOP = pathlib.Path(__file__).resolve().parents[2]
CITED = re.compile(r"docs/reference/([a-z0-9-]+\.md)")
DOC_LINK = re.compile(r"\b(docs/[a-z0-9/-]+\.md)\b")
OUTSIDE = re.compile(r"arc-contracts\.md|shared/reference|reference §\d|\.\./shared/")


def tracked(*patterns: str) -> list[pathlib.Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=TOP, capture_output=True, text=True, check=True)
    return [TOP / name for name in out.stdout.split()]


SOURCES = tracked("*.py", "*.md", "*.yml", "*.yaml", "*.j2", "*.sh", "*.toml", "*.cfg", "Makefile")


def test_no_citation_points_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(TOP)}:{n}: {line.strip()[:100]}"
        for path in SOURCES
        if path.name != "test_citations.py"
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert found == [], "\n".join(found)


def test_every_cited_reference_page_and_doc_exists() -> None:
    missing = set()
    for path in SOURCES:
        text = path.read_text(errors="replace")
        missing |= {
            f"docs/reference/{page}"
            for page in CITED.findall(text)
            if not (TOP / "docs/reference" / page).is_file()
        }
        missing |= {doc for doc in DOC_LINK.findall(text) if not (TOP / doc).is_file()}
    assert missing == set(), sorted(missing)


def test_every_reference_page_names_its_sources() -> None:
    keys = re.compile(
        r"\b(D|S|GC|MC|W|AC|SDK|PEP|PIPD|PIP|PYD|SD|DEB|VMD|CSE):[A-Za-z0-9_./-]+"
        r"|issue [A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+#\d+|RFC \d+"
    )
    for page in (TOP / "docs/reference").glob("*.md"):
        if page.name in ("README.md", "not-public.md"):
            continue
        assert keys.search(page.read_text()), f"{page.name} cites no source"
