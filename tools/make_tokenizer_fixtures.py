#!/usr/bin/env python3
"""Generates tests/data/tokenizer: llama.cpp's vocab-only GGUFs (some trimmed to keep the fixtures small) and
llama.cpp's own token ids for a varied set of texts, which tests/unit/test_tokenizer_llama.cpp checks.

Usage: tools/make_tokenizer_fixtures.py [--vocab-dir DIR] [--out tests/data/tokenizer] [--fuzz-seeds tests/fuzz/corpus]
Without --vocab-dir the llama-cpp-python 0.3.36 sdist is downloaded with pip and its
vendor/llama.cpp/models/ggml-vocab-*.gguf are used. Needs: gguf, numpy, llama-cpp-python==0.3.36.
"""
import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

SEP = "\n__ggml_vocab_test__\n"

# (fixture name, source vocab, keep first N tokens (None: whole file), pre-tokenizer override)
FIXTURES = [
    ("llama-spm", "llama-spm", None, None),
    ("gpt-2", "gpt-2", None, None),
    ("deepseek-coder", "deepseek-coder", None, None),
    ("llama-bpe", "llama-bpe", 12000, None),
    ("qwen2", "qwen2", 12000, None),
    ("deepseek-llm", "deepseek-llm", 12000, None),
    ("deepseek-v3", "deepseek-llm", 12000, "deepseek-v3"),
    ("starcoder", "starcoder", 12000, None),
    ("dbrx", "llama-bpe", 6000, "dbrx"),
    ("falcon", "falcon", 8000, None),
]

TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello world",
    "Hello, World! How's it going? I'm fine, we'll see; they'd've DONE it.",
    "The quick brown fox jumps over the lazy dog.\n\nSecond paragraph.\r\nWindows line.",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { x[i] = y[i] * 2; }  // comment\n\t\treturn;",
    "3.14159 2718281828 1,000,000 0x1F 1e-9 42nd 100%",
    "   leading and trailing spaces   ",
    "tabs\t\tand\nnewlines\n\n\n   \n",
    "emoji: 😀 🚀👍🏽 ❤️ 👨‍👩‍👧",
    "中文分词测试，日本語のテキスト、한국어 문장입니다。",
    "Accents: café naïve résumé Zürich São Paulo Ångström ñ",
    "Ελληνικά и русский текст",
    "mixed   \u00a0non-breaking\u3000ideographic space",
    "a" * 50 + " " + "1234567890" * 5,
    "<s>[INST] hi [/INST]</s>",
    "<|endoftext|>Hello<|endoftext|>",
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>",
    "<｜begin▁of▁sentence｜>User: hi<｜end▁of▁sentence｜>",
]


def fetch_vocab_dir(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "llama-cpp-python==0.3.36", "-d", tmp], check=True)
    sdist = glob.glob(os.path.join(tmp, "llama_cpp_python-0.3.36.tar.gz"))[0]
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/vendor/llama.cpp/models/ggml-vocab-" in m.name]
        tar.extractall(tmp, members=members)
    return glob.glob(os.path.join(tmp, "*/vendor/llama.cpp/models"))[0]


def field_value(field):
    """A reader field as (python value, value type, element type)."""
    vtype = field.types[0]
    if vtype == GGUFValueType.ARRAY:
        return list(field.contents()), vtype, field.types[1]
    return field.contents(), vtype, None


def trim_vocab(src, dst, keep, pre):
    """Writes dst with the first `keep` tokens, every control/user-defined token and the special ids, and the
    merges whose parts and result all survive. Ids are renumbered in order; special ids follow."""
    r = GGUFReader(src)
    fields = {k: field_value(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
    tokens = fields["tokenizer.ggml.tokens"][0]
    types = fields.get("tokenizer.ggml.token_type", ([1] * len(tokens),))[0]
    special_keys = [k for k in fields if k.startswith("tokenizer.ggml.") and k.endswith("_token_id")]
    keep_ids = set(range(min(keep, len(tokens))))
    keep_ids |= {i for i, t in enumerate(types) if t in (3, 4)}
    keep_ids |= {int(fields[k][0]) for k in special_keys if int(fields[k][0]) < len(tokens)}
    order = sorted(keep_ids)
    new_id = {old: new for new, old in enumerate(order)}
    kept_text = {tokens[i] for i in order}
    arch = fields["general.architecture"][0]
    w = GGUFWriter(dst, arch)
    for k, (v, vtype, etype) in fields.items():
        if k == "general.architecture":
            continue
        if k in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            v = [v[i] for i in order]
        elif k == "tokenizer.ggml.merges":
            out = []
            for m in v:
                a, _, b = m.partition(" ")
                if a in kept_text and b in kept_text and (a + b) in kept_text:
                    out.append(m)
            v = out
        elif k in special_keys:
            if int(v) not in new_id:
                continue
            v = new_id[int(v)]
        elif k == "tokenizer.ggml.pre" and pre:
            v = pre
        if vtype == GGUFValueType.ARRAY:
            if etype == GGUFValueType.STRING:
                w.add_array(k, v)
            else:
                dtype = {GGUFValueType.INT32: np.int32, GGUFValueType.FLOAT32: np.float32,
                         GGUFValueType.UINT32: np.uint32}[etype]
                w.add_key_value(k, [dtype(x).item() for x in v], GGUFValueType.ARRAY, etype)
        else:
            w.add_key_value(k, v, vtype)
    if pre and "tokenizer.ggml.pre" not in fields:
        w.add_string("tokenizer.ggml.pre", pre)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def read_inp(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        parts = f.read().split(SEP)
    return [p for p in parts[:-1]] if parts and parts[-1] == "" else parts


def record_truth(gguf_path, texts):
    import ctypes

    import llama_cpp
    llm = llama_cpp.Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    buf = (ctypes.c_char * 512)()

    def piece(t):
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, 512, 0, True)
        return bytes(buf[:n]).hex()

    cases = []
    for text in texts:
        b = text.encode("utf-8")
        raw = llm.tokenize(b, add_bos=False, special=True) if b else []
        cases.append({
            "text": text,
            "ids_add_special": llm.tokenize(b, add_bos=True, special=True),
            "ids": raw,
            "ids_no_parse": llm.tokenize(b, add_bos=False, special=False) if b else [],
            "pieces_hex": [piece(t) for t in raw],
        })
    info = {"bos": llm.token_bos(), "eos": llm.token_eos(), "n_vocab": llm.n_vocab(),
            "eog": [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]}
    del llm
    return info, cases


def write_safetensors(path, tensors, meta=None):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, off, data = {}, 0, b""
    if meta:
        header["__metadata__"] = meta
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + data)


def make_fuzz_seeds(vocab_dir, out):
    """Small seed inputs for tools/fuzz.sh: tiny vocabularies, safetensors images and texts."""
    for sub in ("gguf", "safetensors", "text"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    trim_vocab(os.path.join(vocab_dir, "ggml-vocab-llama-spm.gguf"), os.path.join(out, "gguf", "spm_small.gguf"), 300,
               None)
    trim_vocab(os.path.join(vocab_dir, "ggml-vocab-gpt-2.gguf"), os.path.join(out, "gguf", "bpe_small.gguf"), 300,
               None)
    trim_vocab(os.path.join(vocab_dir, "ggml-vocab-llama-bpe.gguf"), os.path.join(out, "gguf", "llama3_small.gguf"),
               300, None)
    write_safetensors(os.path.join(out, "safetensors", "bf16.safetensors"),
                      [("model.norm.weight", "BF16", [4], bytes(8)), ("lm_head.weight", "F32", [2, 2], bytes(16))],
                      {"format": "pt"})
    write_safetensors(os.path.join(out, "safetensors", "fp8.safetensors"),
                      [("w", "F8_E4M3", [4, 4], bytes(16)), ("w_scale_inv", "F32", [1, 1], bytes(4)),
                       ("b_blocks", "U8", [2, 2], bytes(4)), ("f4", "F4", [4], bytes(2))])
    texts = {"english.txt": "Hello, world! It's 2024.\n", "mixed.txt": TEXTS[11] + TEXTS[12] + TEXTS[13],
             "special.txt": TEXTS[19], "space.txt": TEXTS[10]}
    for name, text in texts.items():
        with open(os.path.join(out, "text", name), "w", encoding="utf-8") as f:
            f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab-dir")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tokenizer"))
    ap.add_argument("--fuzz-seeds", help="also write fuzzing seed inputs into this folder")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_dir = args.vocab_dir or fetch_vocab_dir(tmp)
        if args.fuzz_seeds:
            make_fuzz_seeds(vocab_dir, args.fuzz_seeds)
        for name, source, keep, pre in FIXTURES:
            src = os.path.join(vocab_dir, f"ggml-vocab-{source}.gguf")
            dst = os.path.join(args.out, f"{name}.gguf")
            if keep is None and pre is None:
                shutil.copyfile(src, dst)
                for ext in (".inp", ".out"):  # llama.cpp's own test-tokenizer-0 cases for this vocabulary
                    if os.path.exists(src + ext):
                        shutil.copyfile(src + ext, dst + ext)
            else:
                trim_vocab(src, dst, keep, pre)
            texts = TEXTS + read_inp(src + ".inp")
            info, cases = record_truth(dst, texts)
            with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
                json.dump({"vocab": f"{name}.gguf", "source": f"ggml-vocab-{source}.gguf", "kept_tokens": keep,
                           "pre_override": pre, **info, "cases": cases}, f, ensure_ascii=True, indent=0)
            print(f"{name}: {os.path.getsize(dst)} bytes, {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
