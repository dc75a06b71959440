"""Reference logits at long prompts (1, 17, 1,500 and 4,096 tokens) for the
attention tests, from transformers in float32 (the GGUF dequantized, as in
make_reference.py's logits_f32.json), which shares no code with this repository.

  logits_long_f32.json  a made-up Python module of at least 4,096 tokens (its
                        text and ids), and at positions 0, 16, 1499 and 4095
                        the top-10 ids/logits, the logsumexp and the logits of
                        vocab ids 0..31.

Run (CPU only, under a minute; nothing is downloaded besides the packages):

    python -m venv /tmp/ref && /tmp/ref/bin/pip install torch transformers accelerate gguf numpy
    /tmp/ref/bin/python model/tests/reference/make_long_reference.py \
        --gguf ~/.local/share/basis/models/smollm2-135m-instruct/model.gguf

The output is deterministic: the same packages and GGUF file give the same file.
"""

import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

POSITIONS = [0, 16, 1499, 4095]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import position_record  # noqa: E402  (one record format for both)
TOKENS = POSITIONS[-1] + 1


def module_text(functions):
    """Python source of `functions` made-up request handlers, each a little
    different, so that attention has varied keys to look back at."""
    parts = ['"""Handlers of a small key-value service."""\n\nimport json\n\n']
    for i in range(functions):
        parts.append(
            f"def handle_{i}(request, store, limit={i % 7 + 1}):\n"
            f'    """Serve request {i}: look key_{i} up and keep every {i % 5 + 2}th value."""\n'
            f'    key = request.get("key_{i}")\n'
            f"    if key is None:\n"
            f"        return store.default({i * 37 % 101})\n"
            f"    values = [v for v in store.scan(key) if v % {i % 5 + 2} == 0]\n"
            f'    return json.dumps(values[:limit] + ["{chr(97 + i % 26)}" * {i % 3 + 1}])\n\n\n'
        )
    return "".join(parts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True, help="path to the SmolLM2-135M-Instruct GGUF file")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    gguf_path = os.path.abspath(os.path.expanduser(args.gguf))

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    gguf_dir, gguf_name = os.path.split(gguf_path)
    tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    functions = 1
    while len(tok.encode(module_text(functions), add_special_tokens=False)) < TOKENS:
        functions += 1
    text = module_text(functions)
    ids = tok.encode(text, add_special_tokens=False)
    print(f"{functions} functions, {len(ids)} tokens")

    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids[:TOKENS]], dtype=torch.long)).logits[0].float()
    positions = [position_record(logits[pos], pos) for pos in POSITIONS]
    for p in positions:
        print(f"  pos {p['pos']}: top {p['top10_ids'][:3]}")
    with open(gguf_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    out = {
        "source": "transformers GGUF loader, weights dequantized to float32",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "gguf_sha256": digest,
        "text": text,
        "ids": ids[:TOKENS],
        "positions": positions,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "logits_long_f32.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
