#!/usr/bin/env python3
"""Generates tests/data/hf_tokenizer: Hugging Face tokenizer.json files (with tokenizer_config.json next to them)
built offline from the vocabularies of our GGUF fixtures, laid out the way the real models ship them (the
pre-tokenizer regexes, normalizers, post-processors and decoders of Qwen2/Qwen3, OLMoE (GPT-NeoX), DeepSeek-V3,
gpt-oss (o200k), Llama-2/Mixtral), and the ids and decoded texts the `tokenizers` library gives for a set of
tricky strings, which tests/unit/test_tokenizer_hf.cpp checks exactly.

Usage: tools/make_hf_tokenizer_fixtures.py [--out tests/data/hf_tokenizer]
Needs: tokenizers, gguf, numpy (tools/install-deps.sh --fixtures). No network.
"""
import argparse
import json
import os
import sys

from gguf import GGUFReader
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from make_tokenizer_fixtures import TEXTS  # noqa: E402  (the llama.cpp tokenizer tests' strings)

# Pre-tokenizer regexes as the models' tokenizer.json files spell them.
GPT2_BYTELEVEL = None  # ByteLevel(use_regex=true) carries its own regex
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)"
         r"|\s+")
DSV3 = [
    r"\p{N}{1,3}",
    "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+"
    "[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
]
O200K = ("[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         "|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
         "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")

EXTRA_TEXTS = [
    "e\u0301t\u00e9 cafe\u0301 \u212b \uf900\uf901 \u1100\u1161\u11a8",  # NFC: composes / canonical singletons
    "<think>\nstep one\n</think>\n\nanswer",
    "<|start|>assistant<|channel|>final<|message|>Hi!<|return|>",
    " <|endoftext|> spaced <|im_end|>  ",
    "ø and ö are added tokens in deepseek; ÿÀ too",
    "\u2581already has a metaspace \u2581\u2581two",
    "  two leading spaces",
    "\n\nnewlines first",
    "unknown chars: \U0001f9ec \u0d9e \U00010348 done",
    "<s><s>double bos</s> then text",
    "don't DON'T it's IT'S we'LL",
    "x" * 300,
    "fill the <mask> here, \t<mask>\n and [R]   after; [R]",  # lstrip / rstrip added tokens (olmoe)
    "cat concat cats cat. (cat) the_cat cat",  # single_word added token (olmoe)
]

TEXTS_ALL = list(TEXTS) + EXTRA_TEXTS


def read_vocab(path):
    r = GGUFReader(path)
    f = r.fields
    tokens = list(f["tokenizer.ggml.tokens"].contents())
    types = list(f["tokenizer.ggml.token_type"].contents())
    merges = list(f["tokenizer.ggml.merges"].contents()) if "tokenizer.ggml.merges" in f else []
    return tokens, types, merges


def trim(tokens, types, keep):
    """First `keep` normal tokens plus the control / user-defined ones (llama.cpp's [PADn] hole fillers
    dropped), renumbered in order. Returns (vocab list, {text: special?} for added tokens)."""
    order = [i for i in range(len(tokens)) if i < keep or (types[i] in (3, 4) and not tokens[i].startswith("[PAD"))]
    vocab = [tokens[i] for i in order]
    added = {tokens[i]: types[i] == 3 for i in order if types[i] in (3, 4)}
    return vocab, added


def bpe_merges(vocab, merges):
    kept = set(vocab)
    out = []
    for m in merges:
        a, _, b = m.partition(" ")
        if a in kept and b in kept and (a + b) in kept:
            out.append((a, b))
    return out


def spm_merges(vocab, skip):
    """Merges from a SentencePiece vocabulary as the HF converters derive them: every split of a token into two
    vocabulary pieces, ordered by the merged token's id (SentencePiece score order), then by the pieces' ids."""
    ids = {t: i for i, t in enumerate(vocab)}
    out = []
    for t, tid in ids.items():
        if t in skip:
            continue
        for k in range(1, len(t)):
            a, b = t[:k], t[k:]
            if a in ids and b in ids and a not in skip and b not in skip:
                out.append((tid, ids[a], ids[b], a, b))
    out.sort()
    return [(a, b) for _, _, _, a, b in out]


def added_entry(tid, content, special, **kw):
    e = {"id": tid, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": not special, "special": special}
    e.update(kw)
    return e


def split(regex):
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTELEVEL_NOREGEX = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}


def template(bos=None, eos=None, ids=None):
    single = []
    specials = {}
    if bos:
        single.append({"SpecialToken": {"id": bos, "type_id": 0}})
        specials[bos] = {"id": bos, "ids": [ids[bos]], "tokens": [bos]}
    single.append({"Sequence": {"id": "A", "type_id": 0}})
    if eos:
        single.append({"SpecialToken": {"id": eos, "type_id": 0}})
        specials[eos] = {"id": eos, "ids": [ids[eos]], "tokens": [eos]}
    pair = single + [{"Sequence": {"id": "B", "type_id": 1}}]
    return {"type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials}


def build(name, vocab, added, merges, model_extra, normalizer, pre, post, decoder, merges_as_pairs, config,
          extra_added=()):
    """Writes <out>/<name>/tokenizer.json (+ tokenizer_config.json). extra_added: (text, special) appended to
    the vocabulary as added tokens only (not in model.vocab), like Qwen's."""
    ids = {t: i for i, t in enumerate(vocab)}
    model_vocab = dict(ids)
    added_tokens = [added_entry(ids[t], t, sp) for t, sp in added.items()]
    n = len(vocab)
    for text, sp, *flags in extra_added:
        added_tokens.append(added_entry(n, text, sp, **(flags[0] if flags else {})))
        ids[text] = n
        n += 1
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": model_vocab,
             "merges": [[a, b] for a, b in merges] if merges_as_pairs else [f"{a} {b}" for a, b in merges]}
    model.update(model_extra)
    doc = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added_tokens,
           "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post(ids) if callable(post) else post,
           "decoder": decoder, "model": model}
    return doc, ids, config


def write_fixture(out, name, doc, config, meta):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
    tok = Tokenizer.from_file(path)
    cases = []
    for text in TEXTS_ALL:
        with_special = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        cases.append({
            "text": text,
            "ids_add_special": with_special,
            "ids": plain,
            "decoded": tok.decode(with_special, skip_special_tokens=False),
            "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
        })
    truth = {"tokenizer": f"{name}/tokenizer.json", "vocab_size": tok.get_vocab_size(with_added_tokens=True)}
    truth.update(meta)
    truth["cases"] = cases
    with open(os.path.join(out, f"{name}.truth.json"), "w", encoding="utf-8") as f:
        json.dump(truth, f, ensure_ascii=False, indent=0)
    print(f"{name}: {truth['vocab_size']} tokens, {len(doc['model']['merges'])} merges", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "hf_tokenizer"))
    args = ap.parse_args()
    tok_dir = os.path.join(ROOT, "tests", "data", "tokenizer")
    model_dir = os.path.join(ROOT, "tests", "data", "models")
    os.makedirs(args.out, exist_ok=True)
    bytelevel_dec = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    bytelevel_post = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}

    # Qwen2: NFC, Split(qwen2 regex) + ByteLevel, merges as "a b" strings, no BOS.
    tokens, types, merges = read_vocab(os.path.join(tok_dir, "qwen2.gguf"))
    vocab, added = trim(tokens, types, 5000)
    doc, ids, cfg = build("qwen2", vocab, added, bpe_merges(vocab, merges), {}, {"type": "NFC"},
                          {"type": "Sequence", "pretokenizers": [split(QWEN2), BYTELEVEL_NOREGEX]}, bytelevel_post,
                          bytelevel_dec, False,
                          {"add_bos_token": False, "bos_token": None, "eos_token": "<|endoftext|>",
                           "pad_token": "<|endoftext|>", "tokenizer_class": "Qwen2Tokenizer"})
    write_fixture(args.out, "qwen2", doc, cfg, {"bos": None, "eos": ids["<|endoftext|>"], "add_bos": False})

    # Qwen3: the same with merges as [a, b] pairs and non-special added tokens (<think>) beyond model.vocab.
    doc, ids, cfg = build("qwen3", vocab, added, bpe_merges(vocab, merges), {}, {"type": "NFC"},
                          {"type": "Sequence", "pretokenizers": [split(QWEN2), BYTELEVEL_NOREGEX]}, bytelevel_post,
                          bytelevel_dec, True,
                          {"add_bos_token": False, "bos_token": None, "eos_token": "<|im_end|>",
                           "tokenizer_class": "Qwen2Tokenizer"},
                          extra_added=[("<think>", False), ("</think>", False), ("<tool_call>", False)])
    write_fixture(args.out, "qwen3", doc, cfg, {"bos": None, "eos": ids["<|im_end|>"], "add_bos": False})

    # OLMoE (GPT-NeoX tokenizer): NFC, ByteLevel with its own GPT-2 regex, eos <|endoftext|>.
    tokens, types, merges = read_vocab(os.path.join(tok_dir, "gpt-2.gguf"))
    vocab, added = trim(tokens, types, 5000)
    doc, ids, cfg = build("olmoe", vocab, added, bpe_merges(vocab, merges), {}, {"type": "NFC"},
                          {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
                          bytelevel_post, bytelevel_dec, False,
                          {"add_bos_token": False, "add_eos_token": False, "bos_token": None,
                           "eos_token": "<|endoftext|>", "pad_token": "<|padding|>"},
                          extra_added=[("<|padding|>", True), ("<mask>", True, {"lstrip": True}),
                                       ("[R]", False, {"rstrip": True}), ("cat", False, {"single_word": True})])
    write_fixture(args.out, "olmoe", doc, cfg, {"bos": None, "eos": ids["<|endoftext|>"], "add_bos": False})

    # DeepSeek-V3: three Splits + ByteLevel, empty normalizer sequence, BOS by TemplateProcessing.
    tokens, types, merges = read_vocab(os.path.join(tok_dir, "deepseek-llm.gguf"))
    vocab, added = trim(tokens, types, 5000)
    bos, eos = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
    doc, ids, cfg = build("deepseek-v3", vocab, added, bpe_merges(vocab, merges), {},
                          {"type": "Sequence", "normalizers": []},
                          {"type": "Sequence", "pretokenizers": [split(r) for r in DSV3] + [BYTELEVEL_NOREGEX]},
                          lambda ids: template(bos=bos, ids=ids), bytelevel_dec, False,
                          {"add_bos_token": True, "add_eos_token": False,
                           "bos_token": {"__type": "AddedToken", "content": bos, "lstrip": False,
                                         "normalized": True, "rstrip": False, "single_word": False},
                           "eos_token": {"__type": "AddedToken", "content": eos, "lstrip": False,
                                         "normalized": True, "rstrip": False, "single_word": False}})
    write_fixture(args.out, "deepseek-v3", doc, cfg, {"bos": ids[bos], "eos": ids[eos], "add_bos": True})

    # gpt-oss (o200k_harmony regex) over the llama-bpe vocabulary, harmony special tokens added.
    tokens, types, merges = read_vocab(os.path.join(tok_dir, "llama-bpe.gguf"))
    vocab, added = trim(tokens, types, 5000)
    vocab = vocab[:5000]  # drop the 256 llama-3 specials; harmony's follow
    harmony = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>",
               "<|end|>", "<|message|>", "<|call|>", "<|endofprompt|>"]
    doc, ids, cfg = build("gpt-oss", vocab, {}, bpe_merges(vocab, merges), {}, None,
                          {"type": "Sequence", "pretokenizers": [split(O200K), BYTELEVEL_NOREGEX]}, None,
                          bytelevel_dec, False,
                          {"bos_token": "<|startoftext|>", "eos_token": "<|return|>", "pad_token": "<|endoftext|>"},
                          extra_added=[(t, True) for t in harmony])
    write_fixture(args.out, "gpt-oss", doc, cfg,
                  {"bos": ids["<|startoftext|>"], "eos": ids["<|return|>"], "add_bos": False})

    # Llama-2 / Mixtral (legacy): Prepend + Replace normalizer, BPE with byte fallback, BOS by template.
    # SentencePiece keeps its single characters at the end of the vocabulary: keep them all, so BPE can start.
    spm_tokens, spm_types, _ = read_vocab(os.path.join(tok_dir, "llama-spm.gguf"))

    def spm_trim(keep):
        order = [i for i, t in enumerate(spm_tokens) if i < keep or len(t) == 1]
        return [spm_tokens[i] for i in order], {spm_tokens[i] for i in order if spm_types[i] in (2, 3, 6)}

    special = {"<unk>": True, "<s>": True, "</s>": True}
    spm_model = {"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True}
    vocab, skip = spm_trim(6000)
    spm_decoder = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
        {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    doc, ids, cfg = build("llama2", vocab, special, spm_merges(vocab, skip), spm_model,
                          {"type": "Sequence", "normalizers": [
                              {"type": "Prepend", "prepend": "▁"},
                              {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
                          None, lambda ids: template(bos="<s>", ids=ids), spm_decoder, False,
                          {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                           "unk_token": "<unk>", "legacy": True})
    write_fixture(args.out, "llama2", doc, cfg, {"bos": 1, "eos": 2, "add_bos": True})

    # Mixtral (newer export): Metaspace pre-tokenizer (prepend_scheme first), merges as pairs, BOS + EOS by the
    # template, Metaspace decoder, no tokenizer_config.json.
    vocab, skip = spm_trim(2000)
    metaspace = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    doc, ids, cfg = build("mixtral", vocab, special, spm_merges(vocab, skip), spm_model, None, metaspace,
                          lambda ids: template(bos="<s>", eos="</s>", ids=ids),
                          {"type": "Sequence", "decoders": [dict(metaspace), {"type": "ByteFallback"},
                                                            {"type": "Fuse"}]}, True, None)
    write_fixture(args.out, "mixtral", doc, cfg, {"bos": 1, "eos": 2, "add_bos": True})


if __name__ == "__main__":
    main()
