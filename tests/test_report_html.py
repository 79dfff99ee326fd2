"""The HTML report: self-contained, complete, passages once, safe escaping, clear errors; and in a real
headless Chromium: leaderboard, disagreement filters, paging, gold highlighting, screenshot."""
import json
import re
import shlex
import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from imprag_bench.harness import runner
from imprag_bench.harness.cli import _resolve, build_parser, main
from imprag_bench.harness.report_html import collect, command_from_config, json_for_script, write_report
from imprag_bench.harness.report_svg import group_chart
from tests import report_run
from tests.report_run import HOSTILE, passages, write_run

ROOT = Path(__file__).resolve().parents[1]


def _data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(run folder, report path, html text) of the hand-designed run."""
    run = write_run(tmp_path_factory.mktemp("rep") / "run")
    path = write_report(run)
    return run, path, path.read_text(encoding="utf-8")


def test_page_is_self_contained(built):
    _, path, html = built
    assert path.name == "report.html"
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"<link\b|<script[^>]*\bsrc\s*=|@import|url\(", html, re.I)
    assert html.count("<script") == 2  # the JSON data and the inlined JS, nothing from the data


def test_every_system_task_and_group_is_in_the_data(built):
    _, _, html = built
    d = _data(html)
    assert d["systems"] == ["bm25", "closed-book", "imprag"]
    assert [t["name"] for t in d["tasks"]] == ["nq", "fever"] and [t["n"] for t in d["tasks"]] == [6, 60]
    assert d["groups"] == ["ALL:seen", "ALL:unseen-format", "ALL:all"]
    assert {(r["system"], r["task"]) for r in d["leaderboard"]} == {
        (s, t) for s in d["systems"] for t in ("nq", "fever", *d["groups"])}
    nq = d["examples"]["nq"]
    assert [r[3] for r in nq["sys"]["imprag"]] == report_run.IMPRAG_EM
    assert [r[4] for r in nq["sys"]["bm25"]] == report_run.BM25_RC
    assert nq["sys"]["imprag"][0][0] is None and nq["sys"]["bm25"][0][0] == 1  # implicit / same as prompt


def test_passages_included_once_and_only_referenced(built):
    _, _, html = built
    d = _data(html)
    ids = [p[0] for p in d["passages"]]
    assert sorted(ids) == sorted({"n0", "n1", "n2", "n3", "n4", "n5", "f0", "f1", "f2"}) and len(ids) == len(set(ids))
    by_id = {p["id"]: p for p in passages()}
    for pid, title, text in d["passages"]:
        assert (title, text) == (by_id[pid]["title"], by_id[pid]["text"])
    for i in (0, 1, 2, 4, 5):
        assert html.count(by_id[f"n{i}"]["text"]) == 1
    assert "UNREFERENCED" not in html
    nq = d["examples"]["nq"]
    assert [d["passages"][j][0] for j in nq["sys"]["imprag"][1][1]] == ["n1"]


def test_hostile_text_cannot_close_the_script_tag(built):
    _, _, html = built
    assert HOSTILE not in html and "</script><script>" not in html and "<img" not in html
    d = _data(html)
    assert d["examples"]["nq"]["prompt"][3].endswith(HOSTILE)
    assert json.loads(json_for_script({"x": "</script>&<!--"})) == {"x": "</script>&<!--"}
    assert "<" not in json_for_script({"x": "</script><!--"})


def test_paired_and_manifest_shown_only_when_present(tmp_path, built):
    assert _data(built[2])["paired"] is None and _data(built[2])["manifest"] is None
    run = write_run(tmp_path / "run")
    (run / "paired.csv").write_text("baseline,scope,metric,delta,lo,hi\nbm25,ALL:seen,em,12.5,2.0,20.0\n")
    (run / "manifest.json").write_text(json.dumps({"command": "imprag-bench headline --x", "git": "abc"}))
    d = collect(run)
    assert d["paired"] == [{"baseline": "bm25", "scope": "ALL:seen", "metric": "em", "delta": 12.5,
                            "lo": 2.0, "hi": 20.0}]
    assert d["manifest"]["git"] == "abc"
    assert d["command"] == "imprag-bench headline --x" and d["command_source"] == "manifest.json"


def test_command_resolves_back_to_the_config():
    cfg = json.loads((ROOT / "results" / "quick" / "config.json").read_text())
    args = build_parser().parse_args(shlex.split(command_from_config(cfg))[1:])
    assert _resolve(args) == cfg


def test_chart_bar_and_whisker_geometry():
    rows = [{"system": "s", "task": "ALL:seen", "em": 50.0, "em_lo": 40.0, "em_hi": 60.0}]
    svg = group_chart(rows, ["s"], ["ALL:seen"])
    # y axis tops at 60 (the highest whisker, rounded up to 10); the plot is 240 px tall from y=16.
    assert 'height="200.0"' in svg and 'y="56.0"' in svg  # bar: 240 * 50/60 = 200, top at 16 + 40
    assert "V16.0" in svg and "M" in svg  # whisker from lo (y=96) up to hi (y=16)
    assert ">seen<" in svg and ">s<" in svg
    assert "&lt;b&gt;" in group_chart([{**rows[0], "system": "<b>"}], ["<b>"], ["ALL:seen"])


@pytest.mark.parametrize("breakage, message", [
    (lambda run: shutil.rmtree(run / "preds"), "preds: no such folder"),
    (lambda run: (run / "leaderboard.csv").unlink(), "leaderboard.csv: missing"),
    (lambda run: (run / "config.json").unlink(), "config.json: missing"),
    (lambda run: open(run / "preds" / "bm25" / "nq.jsonl", "a").write('{"system": "bm25", "task"\n'),
     "nq.jsonl:7: malformed JSON"),
    (lambda run: open(run / "preds" / "bm25" / "nq.jsonl", "a").write(json.dumps(
        {**report_run.records()[0], "id": "x", "retrieved": "n1"}) + "\n"), "nq.jsonl:7: 'retrieved' must be"),
    (lambda run: (run / "config.json").write_text(json.dumps(
        {**json.loads((run / "config.json").read_text()), "corpus": str(run / "gone.jsonl")})),
     "cannot load corpus"),
])
def test_bad_run_folder_is_one_message_and_exit_2(tmp_path, capsys, breakage, message):
    run = write_run(tmp_path / "run")
    breakage(run)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (run / "report.html").exists() and not list(run.glob(".report.html*"))


def test_no_passages_flag_needs_no_corpus(tmp_path, capsys):
    run = write_run(tmp_path / "run", corpus=str(tmp_path / "gone.jsonl"))
    assert main(["report", str(run), "--no-passages", "--out", str(tmp_path / "r.html")]) == 0
    d = _data((tmp_path / "r.html").read_text())
    assert d["passage_texts"] is False and all(len(p) == 1 for p in d["passages"])


def test_finish_writes_report_and_never_fails_the_run(tmp_path):
    closed = write_run(tmp_path / "closed", [r for r in report_run.records() if r["system"] == "closed-book"],
                       corpus="no-such-corpus")
    runner.finish(closed, None)  # closed-book only: no corpus needed
    assert "closed-book" in (closed / "report.html").read_text()
    broken = write_run(tmp_path / "broken", corpus=str(tmp_path / "gone.jsonl"))
    runner.finish(broken, None)  # unloadable corpus: the run still finishes, without a page
    assert (broken / "leaderboard.csv").exists() and not (broken / "report.html").exists()


# ---------------------------------------------------------------- real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium; scripts/install-browser.sh installs it "
                                                      "(Debian's chromium via apt-get)")


class _Dom(HTMLParser):
    """What the rendered page shows: text outside <script>/<style>, marks, examples, table cells."""

    def __init__(self):
        super().__init__()
        self.stack, self.marks, self.articles, self.th, self.first_td = [], [], [], [], []
        self.attrs_of: dict[str, dict] = {}
        self.imgs = self.scripts = 0
        self._td_index = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in ("br", "meta", "img", "input", "path", "line", "rect"):
            self.stack.append((tag, a))
        if "id" in a:
            self.attrs_of[a["id"]] = a
        if tag == "html":
            self.attrs_of["<html>"] = a
        if tag == "img":
            self.imgs += 1
        if tag == "script":
            self.scripts += 1
        if tag == "article":
            self.articles.append(a.get("data-id"))
        if tag == "tr":
            self._td_index = 0

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def _inside(self, tag=None, id_=None):
        return any((tag is None or t == tag) and (id_ is None or a.get("id") == id_) for t, a in self.stack)

    def handle_data(self, data):
        if self._inside("script") or self._inside("style"):
            return
        if self.stack and self.stack[-1][0] == "mark":
            self.marks.append(data)
        if self._inside(id_="leaderboard"):
            if self._inside("th") and not self._inside("span"):
                self.th.append(data)
            if self._inside("tbody") and self._inside("td") and not self._inside("span"):
                self.first_td.append(data)


def _render(path: Path, tmp_path: Path, fragment: str, screenshot: Path | None = None) -> _Dom:
    url = path.resolve().as_uri() + "#" + fragment
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}",
           "--hide-scrollbars", "--window-size=1280,2000"]
    cmd += [f"--screenshot={screenshot}", url] if screenshot else ["--dump-dom", url]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = _Dom()
    if not screenshot:
        dom.feed(res.stdout)
        assert dom.attrs_of["<html>"].get("data-ready") == "1", "the page's script did not finish"
    return dom


@pytest.fixture(scope="module")
def page(built, tmp_path_factory):
    return built[1], tmp_path_factory.mktemp("chromium")


@browser
def test_browser_leaderboard_lists_every_system_and_task(page):
    dom = _render(*page, "task=nq")
    assert {"nq", "fever", "seen", "unseen-format", "all"} <= set(dom.th)
    assert {"bm25", "closed-book", "imprag"} <= set(dom.first_td)
    assert dom.imgs == 0 and dom.attrs_of.get("paired-wrap", {}).get("hidden") is not None


@browser
@pytest.mark.parametrize("flt, ids", [
    ("all", [0, 1, 2, 3, 4, 5]), ("disagree", [1, 2, 4]), ("a_right", [1, 4]), ("b_right", [2]),
    ("retrieval", [1, 2, 5]),
])
def test_browser_filters_change_the_rows_shown(page, flt, ids):
    dom = _render(*page, f"task=nq&a=imprag&b=bm25&filter={flt}")
    assert dom.articles == [f"nq-{i}" for i in ids]
    assert dom.attrs_of["shown-count"]["data-count"] == str(len(ids))


@browser
def test_browser_pages_examples_and_swapping_systems_swaps_filters(page):
    assert len(_render(*page, "task=fever&a=imprag&b=closed-book&filter=all").articles) == 50
    assert _render(*page, "task=fever&a=imprag&b=closed-book&filter=all&page=2").articles == [
        f"fever-{i}" for i in range(50, 60)]
    assert _render(*page, "task=nq&a=bm25&b=imprag&filter=a_right").articles == ["nq-2"]


@browser
def test_browser_highlights_gold_case_insensitively_and_shows_no_injected_markup(page):
    dom = _render(*page, "task=nq&a=imprag&b=bm25&filter=all")
    assert dom.marks and {m.upper() for m in dom.marks} <= {f"PARIS-{i}" for i in range(6)}
    assert "paris-0" in dom.marks  # the passage's own case is kept
    assert dom.imgs == 0 and dom.scripts == 2  # the hostile <img onerror> in prompt, prediction and passage stayed text


@browser
def test_browser_screenshot(page, tmp_path):
    png = tmp_path / "report.png"
    _render(*page, "task=nq&a=imprag&b=bm25&filter=disagree", screenshot=png)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1280, 2000)


@browser
def test_browser_header_clicks_sort_and_metric_toggle(built, tmp_path):
    """A copy of the page with a script that clicks like a user: nq header once (descending), once more
    (ascending), then the recall toggle and the seen group header."""
    clicks = ('<script>(function () {'
              'const th = (t) => [...document.querySelectorAll("#leaderboard th")].find((h) => h.firstChild.data === t);'
              'const order = () => [...document.querySelectorAll("#leaderboard tbody tr td:first-child")].map((td) => td.textContent);'
              'const seen = [];'
              'th("nq").click(); seen.push(order().join(","));'
              'th("nq").click(); seen.push(order().join(","));'
              'document.querySelector("#metric-toggle [data-metric=recall]").click();'
              'th("seen").click(); seen.push(order().join(","));'
              'document.documentElement.setAttribute("data-orders", seen.join("|"));'
              '})();</script></body>')
    page = tmp_path / "clicked.html"
    page.write_text(built[2].replace("</body>", clicks), encoding="utf-8")
    dom = _render(page, tmp_path, "task=nq")
    # nq EM: imprag 50.0, bm25 33.3, closed-book 0.0; seen recall: bm25 83.3, imprag 66.7, closed-book none (last)
    assert dom.attrs_of["<html>"]["data-orders"].split("|") == [
        "imprag,bm25,closed-book", "closed-book,bm25,imprag", "bm25,imprag,closed-book"]
