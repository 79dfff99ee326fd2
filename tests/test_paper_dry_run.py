"""A dry run of the paper's setting end to end, as CI can run it: `train imprag` and `train ra-dit-llama` with
the paper preset, then `run --preset paper`, on the hub fixtures (the eight tasks, the Wikipedia corpus, the
instruction sets) with a tiny random Llama on CPU, a few steps and a Flat index. It must end in a leaderboard
over all eight tasks. Only the overrides below differ from what a GPU user runs; MiniLM stands in for
Contriever-MSMARCO (no hub here). And without weights, the real paper preset ends with one clean message."""
import json
from pathlib import Path

import pandas as pd
import pytest

from imprag_bench.harness.cli import main
from tests.tiny import byte_tokenizer, tiny_llama

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
TASKS = ["nq", "hotpotqa", "simpleqa", "2wiki", "trex", "zsre", "fever", "aida"]


@pytest.fixture
def hub_fixtures(monkeypatch):
    monkeypatch.setenv("IMPRAG_BENCH_HUB_FIXTURES", str(FIXTURES))
    monkeypatch.setenv("IMPRAG_BENCH_NEWSQA", str(FIXTURES / "_manual/newsqa/combined-newsqa-data-v1.json"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def tiny_model(folder: Path) -> str:
    model, tok = tiny_llama(n_layers=4), byte_tokenizer()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.integration
def test_paper_path_trains_and_evaluates_on_the_hub_fixtures(tmp_path, hub_fixtures, one_thread):
    model = tiny_model(tmp_path / "tiny-llama")
    cache = tmp_path / "cache"
    common = [f"model={model}", "device=cpu", "bf16=false", "steps=2", "batch_size=4", "ckpt_every=1",
              "retriever=minilm", "l_max=32", "n_read=2", "max_prompt_tokens=64", "max_target_tokens=8",
              f"cache_dir={cache}"]
    assert main(["train", "imprag", "--preset", "paper", "--out", str(tmp_path / "imprag"),
                 "--set", *common, "query_k=2"]) == 0
    imp_cfg = json.loads((tmp_path / "imprag/train_config.json").read_text())
    assert imp_cfg["recipe"] == "paper" and imp_cfg["teacher_over"] == "all" and imp_cfg["score_scale"] == 1.0
    assert imp_cfg["mix"].get("instruct", 0) > 0  # the hub instruction sets are in the mix
    assert main(["train", "ra-dit-llama", "--preset", "paper", "--out", str(tmp_path / "ra"),
                 "--set", *common, "retriever_steps=2"]) == 0
    out = tmp_path / "run"
    assert main(["run", "--preset", "paper", "--model", model, "--device", "cpu", "--n", "2", "--k", "2",
                 "--max-new-tokens", "3", "--out", str(out), "--cache-dir", str(cache), "--systems",
                 "closed-book", "bm25", f"imprag:checkpoint={tmp_path / 'imprag/checkpoint'},index=Flat",
                 f"ra-dit-llama:checkpoint={tmp_path / 'ra/reader/checkpoint'},index=Flat"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert set(TASKS) <= set(board["task"]) and {"ALL:seen", "ALL:unseen-format"} <= set(board["task"])
    assert set(board["system"]) >= {"closed-book", "bm25"} and len(set(board["system"])) == 4
    assert (out / "report.html").exists()


def test_paper_preset_without_weights_ends_with_how_to_provide_them(tmp_path, hub_fixtures, capsys):
    code = main(["run", "--preset", "paper", "--n", "1", "--out", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("imprag-bench: error:") == 1 and "Traceback" not in err
    assert "meta-llama/Llama-3.2-3B" in err and "--model" in err
