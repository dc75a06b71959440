"""Generate independent reference values for the basis-model tests.

Everything is computed from one GGUF file (SmolLM2-135M-Instruct, Q4_1) by
two implementations that share no code with this repository:

  tokenizer.json   token ids for ~30 tricky strings, from llama.cpp's
                   tokenizer (no BOS, special tokens not parsed), plus whether
                   transformers' GGUF tokenizer produces the same ids.
  logits_f32.json  float32 logits from transformers (the GGUF dequantized to
                   f32) for a short code prompt: top-10 ids/logits, the
                   logsumexp and the logits of vocab ids 0..31 at every
                   position.
  llamacpp.json    llama.cpp on the quantized weights: the argmax at every
                   position of a ~250-token text evaluated in one batch
                   (teacher forcing), and 24 greedy tokens for six prompts
                   with the top-1/top-2 logit gap of each step.

Run (CPU only, about two minutes; nothing is downloaded besides the packages):

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers \
        gguf llama-cpp-python==0.3.36 numpy
    /tmp/ref/bin/python model/tests/reference/make_reference.py \
        --gguf ~/.local/share/basis/models/smollm2-135m-instruct/model.gguf

Options: --out DIR (default: the directory holding this script). The output is
deterministic: rerunning it with the same packages and GGUF file rewrites
identical files.
"""

import argparse
import hashlib
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

N_THREADS = 2
N_CTX = 2048
SEED = 1234
GREEDY_STEPS = 24

TOKENIZER_CASES = [
    "",
    " ",
    "\n\n\n",
    "Hello, world!",
    "  leading and trailing spaces  ",
    "multiple     spaces   between    words",
    "def greet(name):\n    if name:\n        return f\"Hello, {name}!\"\n    return None\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * 2).collect();\n    println!(\"{:?}\", v);\n}\n",
    "const sum = (a, b) => {\n  return a + b; // add\n};\nconsole.log(`sum=${sum(1, 2)}`);",
    "x = 1234567890",
    "3.14159",
    "v2.0.1",
    "The year 2024 had 366 days and 8784 hours; 1e-5 != 0.00001.",
    "line one\r\nline two\r\n\r\nline four\r\n",
    "\tindented\twith\ttabs\n\t\tdouble tab",
    "Café au lait, naïve résumé, über, Straße, façade.",
    "Привет, как дела? Всё хорошо.",
    "中文分词测试：我喜欢编程。日本語もテストします。",
    "مرحبا بالعالم",
    "emoji: 😀🎉🚀 and ZWJ: 👩‍💻 👨‍👩‍👧‍👦 flags: 🇫🇷🇯🇵",
    "don't, I'll, we've, they're, she's, it'd, you'RE, WE'VE",
    "ALL CAPS SHOUTING and MiXeD CaSe",
    "email@example.com https://example.org/path?q=1&r=two#frag",
    "a\n\n\nb    \n  c",
    "   ",
    "if (x<=y && y!=z || !w) { return x>>2; }",
    "# Heading\n\n- item *one*\n- item **two**\n\n```python\nprint('hi')\n```\n",
    "<html><body class=\"main\">&amp; &lt;tag&gt;</body></html>",
    "Ünïcödé ẞ Ωmega ≤ ≥ ≠ → ∑ ∞",
    (
        "In 1969, Apollo 11 landed on the Moon. The crew — Armstrong, Aldrin "
        "and Collins — travelled 384,400 km.\nCode: `for i in range(10): "
        "print(i ** 2)`\nPrices: $19.99, €5, ¥1000; ratio 3:2, 50% off!\n"
        "Mixed scripts: naïve café, Москва, 東京, القاهرة 🚀✨ — done.  "
        "Trailing  double  spaces\tand a tab.\r\n"
    ),
]

LOGITS_PROMPT = (
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'
    "    if n < 2:\n        return n\n"
)

TEACHER_FORCED_TEXT = '''"""A tiny inventory module used as a test fixture."""

from dataclasses import dataclass, field


@dataclass
class Item:
    """One product on a shelf."""

    name: str
    price: float
    quantity: int = 0


@dataclass
class Inventory:
    """A collection of items with a few helpers."""

    items: list = field(default_factory=list)

    def add(self, item):
        """Add an item, merging quantities when the name already exists."""
        for existing in self.items:
            if existing.name == item.name:
                existing.quantity += item.quantity
                return existing
        self.items.append(item)
        return item

    def total_value(self):
        """Return the value of everything in stock."""
        total = 0.0
        for item in self.items:
            total += item.price * item.quantity
        return total

The module above keeps track of a small shop. Each item has a name, a price
and a quantity, and the inventory can report the total value of its stock.
It is short on purpose, so that a language model can be checked against a
reference implementation one token at a time.
'''

# (prompt, parse special tokens?)
GREEDY_PROMPTS = [
    ("The capital of France is", False),
    ("def add(a, b):\n    return", False),
    ("import numpy as", False),
    ("1, 2, 3, 4, 5,", False),
    ("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n", True),
    ("for (int i = 0; i <", False),
]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def r(x, nd=5):
    return round(float(x), nd)


def dump(obj, path, list_keys):
    """Write JSON compactly: one line per element of the named top-level lists."""
    parts = []
    for key, value in obj.items():
        k = json.dumps(key)
        if key in list_keys and isinstance(value, list):
            rows = ",\n  ".join(json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in value)
            parts.append(f" {k}: [\n  {rows}\n ]")
        else:
            parts.append(f" {k}: {json.dumps(value, ensure_ascii=False, separators=(',', ':'))}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("{\n" + ",\n".join(parts) + "\n}\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def llama_tokenize(llm, text, special=False):
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))


def make_tokenizer_json(args, vocab, hf_tok, versions, digest):
    cases = []
    agree = 0
    for text in TOKENIZER_CASES:
        ids = llama_tokenize(vocab, text)
        hf_ids = list(hf_tok(text, add_special_tokens=False)["input_ids"])
        same = ids == hf_ids
        agree += same
        cases.append({"text": text, "ids": ids, "transformers_agrees": same})
        if not same:
            print(f"  tokenizer disagreement on {text!r}\n    llama.cpp:    {ids}\n    transformers: {hf_ids}")
    print(f"tokenizer: transformers agrees with llama.cpp on {agree}/{len(cases)} cases")
    out = {
        "source": f"llama.cpp (llama-cpp-python {versions['llama_cpp_python']}) and transformers {versions['transformers']}",
        "gguf_sha256": digest,
        "add_bos": False,
        "parse_special": False,
        "cases": cases,
    }
    dump(out, os.path.join(args.out, "tokenizer.json"), {"cases"})


def position_record(row, pos):
    """What the tests compare at one position of a logits row (a torch tensor):
    the top-10 ids and logits, the logsumexp and the logits of ids 0..31."""
    import torch

    vals, idx = torch.topk(row, 10)
    return {
        "pos": pos,
        "top10_ids": [int(i) for i in idx],
        "top10_logits": [r(v) for v in vals],
        "logsumexp": r(torch.logsumexp(row.double(), 0)),
        "first32": [r(v) for v in row[:32]],
    }


def make_logits_json(args, model, prompt_ids, versions, digest):
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids], dtype=torch.long)).logits[0].float()
    positions = [position_record(logits[pos], pos) for pos in range(logits.shape[0])]
    print("logits_f32: first positions")
    for p in positions[:3]:
        print(f"  pos {p['pos']}: {list(zip(p['top10_ids'][:5], p['top10_logits'][:5]))} lse={p['logsumexp']}")
    out = {
        "source": "transformers GGUF loader, weights dequantized to float32",
        "dtype": "float32",
        "transformers_version": versions["transformers"],
        "torch_version": versions["torch"],
        "gguf_sha256": digest,
        "text": LOGITS_PROMPT,
        "ids": prompt_ids,
        "positions": positions,
    }
    dump(out, os.path.join(args.out, "logits_f32.json"), {"positions"})
    return logits


def eval_all(llm, ids):
    """Evaluate ids from an empty context; return the [len(ids), vocab] logits."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: llm.n_tokens], dtype=np.float32)


def greedy(llm, prompt_ids, steps):
    llm.reset()
    llm.eval(prompt_ids)
    out, margins = [], []
    for _ in range(steps):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        order = np.argsort(-row, kind="stable")
        tok = int(order[0])
        out.append(tok)
        margins.append(r(row[order[0]] - row[order[1]]))
        llm.eval([tok])
    return out, margins


def make_llamacpp_json(args, llm, model, versions, digest):
    import torch

    ids = llama_tokenize(llm, TEACHER_FORCED_TEXT)
    logits = eval_all(llm, ids)
    top1 = [int(i) for i in logits.argmax(axis=1)]
    top2_vals = np.sort(logits, axis=1)[:, -2:]
    top1_margins = [r(b - a) for a, b in top2_vals]
    with torch.no_grad():
        hf = model(torch.tensor([ids], dtype=torch.long)).logits[0].float().numpy()
    hf_top1 = hf.argmax(axis=1)
    agree = int(sum(int(a == b) for a, b in zip(top1, hf_top1)))
    print(f"teacher_forced: {len(ids)} tokens; llama.cpp vs transformers f32 top-1 agreement "
          f"{agree}/{len(ids)} = {agree / len(ids):.4f}")
    for pos, (a, b) in enumerate(zip(top1, hf_top1)):
        if a != b:
            print(f"  pos {pos}: llama.cpp {a} (margin {top1_margins[pos]}), transformers {int(b)} "
                  f"(f32 logits {hf[pos, a]:.3f} vs {hf[pos, b]:.3f})")

    eos = int(llm.token_eos())
    greedy_cases = []
    for prompt, special in GREEDY_PROMPTS:
        pids = llama_tokenize(llm, prompt, special=special)
        gids, margins = greedy(llm, pids, GREEDY_STEPS)
        text = llm.detokenize(gids, special=True).decode("utf-8", errors="replace")
        first_eos = gids.index(eos) if eos in gids else None
        greedy_cases.append({
            "prompt": prompt,
            "parse_special": special,
            "prompt_ids": pids,
            "greedy_ids": gids,
            "greedy_text": text,
            "margins": margins,
            "first_eos_index": first_eos,
        })
        print(f"  greedy {prompt!r} -> {text!r}  min margin {min(margins):.3f}")

    out = {
        "source": "llama.cpp on the quantized GGUF weights (CPU)",
        "llama_cpp_python_version": versions["llama_cpp_python"],
        "gguf_sha256": digest,
        "settings": {"n_threads": N_THREADS, "n_ctx": N_CTX, "seed": SEED, "add_bos": False,
                     "logits_all": True},
        "eos_id": eos,
        "teacher_forced": {
            "text": TEACHER_FORCED_TEXT,
            "ids": ids,
            "top1": top1,
            "top1_margins": top1_margins,
            "transformers_f32_top1_agreement": r(agree / len(ids), 4),
        },
        "greedy_steps": GREEDY_STEPS,
        "greedy": greedy_cases,
    }
    dump(out, os.path.join(args.out, "llamacpp.json"), {"greedy"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="path to the SmolLM2-135M-Instruct GGUF file")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output directory (default: this script's directory)")
    args = ap.parse_args()
    gguf_path = os.path.abspath(os.path.expanduser(args.gguf))
    os.makedirs(args.out, exist_ok=True)

    import torch
    import transformers
    import llama_cpp
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    torch.set_num_threads(N_THREADS)
    versions = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "llama_cpp_python": llama_cpp.__version__,
    }
    print("versions:", versions, "python", sys.version.split()[0])
    digest = sha256_of(gguf_path)
    print("gguf sha256:", digest)

    gguf_dir, gguf_name = os.path.split(gguf_path)
    hf_tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    vocab = Llama(model_path=gguf_path, vocab_only=True, verbose=False)
    make_tokenizer_json(args, vocab, hf_tok, versions, digest)
    prompt_ids = llama_tokenize(vocab, LOGITS_PROMPT)
    del vocab

    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    model.eval()
    make_logits_json(args, model, prompt_ids, versions, digest)

    llm = Llama(model_path=gguf_path, n_threads=N_THREADS, n_threads_batch=N_THREADS, n_ctx=N_CTX,
                n_batch=512, seed=SEED, logits_all=True, verbose=False)
    make_llamacpp_json(args, llm, model, versions, digest)


if __name__ == "__main__":
    main()
