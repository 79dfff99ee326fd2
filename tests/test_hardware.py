"""Tests for imprag_bench.harness.hardware: bf16 capability from (fake) /proc/cpuinfo, dtype choice, facts."""
import pytest
import torch

from imprag_bench.harness import hardware
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.hardware import cpu_model, machine_facts, native_bf16, pick_dtype, use_bf16

# Abbreviated /proc/cpuinfo of three CPUs: AVX-512 without bf16 (the issue-15 machine), AVX512-BF16, Arm BF16.
AVX512F = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni
processor\t: 1
model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni
"""
AVX512_BF16 = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni
"""
AMX = "processor\t: 0\nmodel name\t: Intel Xeon Sapphire Rapids\nflags\t\t: avx512f amx_bf16 amx_tile amx_int8\n"
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16 i8mm\nCPU implementer\t: 0x41\n"
ARM_NO = "processor\t: 0\nFeatures\t: fp asimd\n"


@pytest.mark.parametrize("text,native", [(AVX512F, False), (AVX512_BF16, True), (AMX, True), (ARM, True),
                                         (ARM_NO, False), ("", False)])
def test_native_bf16_from_cpuinfo(text, native):
    assert native_bf16("cpu", cpuinfo=text) is native
    assert pick_dtype("auto", "cpu", cpuinfo=text) == (torch.bfloat16 if native else torch.float32)
    assert use_bf16(None, "cpu", cpuinfo=text) is native


def test_x86_needs_the_flag_itself():
    # a "bf16" token on an x86 flags line is not AVX512-BF16 (only the Arm Features line uses that name)
    assert not native_bf16("cpu", cpuinfo="model name\t: X\nflags\t\t: avx512f bf16\n")


@pytest.mark.parametrize("option,want", [("bf16", torch.bfloat16), ("BF16", torch.bfloat16), (True, torch.bfloat16),
                                         ("true", torch.bfloat16), ("bfloat16", torch.bfloat16),
                                         ("fp32", torch.float32), (False, torch.float32), ("false", torch.float32),
                                         ("float32", torch.float32)])
def test_explicit_options_ignore_the_cpu(option, want):
    for text in (AVX512F, AVX512_BF16):
        assert pick_dtype(option, "cpu", cpuinfo=text) == want


@pytest.mark.parametrize("bad", ["fp16", "yes", 1, 0.5, ""])
def test_bad_option(bad):
    with pytest.raises(UserError, match="bf16 option must be auto, true .* or false"):
        pick_dtype(bad, "cpu", cpuinfo=AVX512F)


def test_other_devices(monkeypatch):
    assert native_bf16("meta") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: not including_emulation)
    assert native_bf16("cuda") is True and pick_dtype("auto", "cuda:0") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert native_bf16(torch.device("cuda")) is False


def test_cpu_model_and_facts(monkeypatch):
    assert cpu_model(AVX512F) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    monkeypatch.setattr(hardware, "_cpuinfo_text", lambda cpuinfo: AVX512F if cpuinfo is None else cpuinfo)
    facts = machine_facts()
    assert facts["cpu_model"] == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert facts["cpu_native_bf16"] is False and facts["auto_dtype"] == "float32" and facts["cpu_bf16_flags"] == []
    assert facts["torch"] == torch.__version__ and facts["torch_threads"] >= 1
    monkeypatch.setattr(hardware, "_cpuinfo_text", lambda cpuinfo: AVX512_BF16 if cpuinfo is None else cpuinfo)
    assert machine_facts()["auto_dtype"] == "bfloat16" and machine_facts()["cpu_bf16_flags"] == ["avx512_bf16"]


# --- the systems that choose bf16 take auto / true / false and record the resolved choice ---

PASSAGES = ["Lima is the capital of Peru.", "Havana is the capital of Cuba.", "Everest is the highest mountain."]


def _fake_cpu(monkeypatch, text):
    monkeypatch.setattr(hardware, "_cpuinfo_text", lambda cpuinfo: text if cpuinfo is None else cpuinfo)


def _binding(cache, prefix):
    import json
    return json.loads((next((cache / "index").glob(f"{prefix}*")) / "manifest.json").read_text())["binding"]


def _tiny_dense_folder(folder):
    import json
    from transformers import BertConfig, BertModel
    from tests.tiny import byte_tokenizer

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=258, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, pad_token_id=256)
    BertModel(cfg).eval().save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    (folder / "retriever.json").write_text(json.dumps({"kind": "dense", "normalise": True, "base": "tiny"}))
    return str(folder)


def test_dense_bf16_option(tmp_path, monkeypatch):
    from imprag_bench.harness.dense import DenseEncoder
    from imprag_bench.harness.corpus import Corpus
    from imprag_bench.harness.records import Passage
    from imprag_bench.harness.registry import SYSTEMS
    from imprag_bench.harness.system import RunContext

    enc = _tiny_dense_folder(tmp_path / "enc")
    corpus = Corpus("t", [Passage(f"p{i}", "", t) for i, t in enumerate(PASSAGES)])
    for text, want in ((AVX512F, False), (AVX512_BF16, True)):
        _fake_cpu(monkeypatch, text)
        assert DenseEncoder(enc).bf16 is want  # auto
        assert DenseEncoder(enc, bf16=True).bf16 is True and DenseEncoder(enc, bf16="false").bf16 is False
        cache = tmp_path / f"cache-{want}"
        ctx = RunContext(options={}, cache_dir=cache, demos={})
        retriever = SYSTEMS.get("dense")({"encoder": enc}).make_retriever(corpus, ctx)  # the dense system's default
        assert retriever.encoder.bf16 is want and _binding(cache, "dense-")["bf16"] is want
        off = SYSTEMS.get("dense")({"encoder": enc, "bf16": False}).make_retriever(corpus, ctx)
        assert off.encoder.bf16 is False
    with pytest.raises(UserError, match="bf16 option"):
        DenseEncoder(enc, bf16="fp16")


def test_imprag_system_bf16_option(tmp_path, monkeypatch):
    from imprag_bench.harness import lm as hlm
    from imprag_bench.harness.corpus import Corpus
    from imprag_bench.harness.records import Passage
    from imprag_bench.harness.registry import SYSTEMS
    from imprag_bench.harness.system import RunContext
    from tests.tiny import byte_tokenizer, tiny_llama

    lm, tok = tiny_llama(n_layers=4), byte_tokenizer()
    monkeypatch.setattr(hlm, "load_lm", lambda name, dtype=None, device="cpu": (lm, tok))
    corpus = Corpus("t", [Passage(f"p{i}", "", t) for i, t in enumerate(PASSAGES)])
    for text, opts, want in ((AVX512F, {}, False), (AVX512_BF16, {}, True), (AVX512F, {"bf16": True}, True),
                             (AVX512_BF16, {"bf16": False}, False)):
        _fake_cpu(monkeypatch, text)
        cache = tmp_path / f"cache-{len(list(tmp_path.iterdir()))}"
        ctx = RunContext(options={"model": "tiny/model", "l_max": 16, **opts}, cache_dir=cache, demos={})
        system = SYSTEMS.get("imprag")(ctx.options)
        system.prepare(corpus, ctx)
        assert system.bf16 is want and _binding(cache, "imprag-")["bf16"] is want
        assert next((cache / "index").glob("imprag-*")).name.count("-bf16-") == int(want)
