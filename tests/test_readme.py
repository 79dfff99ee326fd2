"""The README stays a front page: at most 14,000 characters, a contents list whose every link reaches a heading,
and relative links that point at files that exist (the long material lives in docs/)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def headings(text: str) -> set[str]:
    body = re.sub(r"```.*?```", "", text, flags=re.S)  # a '#' comment inside a code block is no heading
    return {anchor(h) for h in re.findall(r"(?m)^#+ (.+)$", body)}


def test_readme_is_short_with_a_contents_list():
    text = (ROOT / "README.md").read_text()
    assert len(text) <= 14_000, len(text)
    contents = text.split("## Contents\n", 1)[1].split("\n## ", 1)[0]
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert len(links) >= 5 and set(links) <= headings(text), sorted(set(links) - headings(text))


def test_readme_and_docs_links_resolve():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#([^)]+))?\)", text):
            path, frag = target
            dest = (doc.parent / path).resolve()
            assert dest.exists(), f"{doc.name}: link to missing {path}"
            if frag and dest.suffix == ".md":
                assert frag in headings(dest.read_text()), f"{doc.name}: no heading #{frag} in {path}"
        for frag in re.findall(r"\]\(#([^)]+)\)", text):
            assert frag in headings(text), f"{doc.name}: no heading #{frag}"
