"""PEFT round trip: load Basis's LoRA adapter (peft_adapter/, written by
tests/peft_round_trip.rs with BASIS_WRITE_FIXTURES=1) onto the transformers model
loaded from the same GGUF, and record logits for the Rust test to compare with.

Run (same venv as make_reference.py, plus `pip install peft`):
    python model/tests/reference/peft_roundtrip.py --gguf PATH/TO/model.gguf
"""
import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM

HERE = Path(__file__).resolve().parent
TEXT_IDS = [1604, 3987, 46477, 24, 94, 727, 472, 1620, 14362, 260, 304, 29, 373, 24681]
PROBE_IDS = list(range(0, 64)) + [260, 304, 472, 727, 1604, 3987, 14362, 46477]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", default=str(HERE / "peft_logits.json"))
    args = ap.parse_args()
    gguf = Path(args.gguf).resolve()
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(HERE / "peft_adapter"))
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([TEXT_IDS])).logits[0]
    rows = [[round(float(logits[p, i]), 5) for i in PROBE_IDS] for p in range(len(TEXT_IDS))]
    out = {
        "source": f"PEFT {peft.__version__} on transformers {transformers.__version__} (GGUF dequantized to f32)",
        "ids": TEXT_IDS,
        "probe_ids": PROBE_IDS,
        "logits": rows,
    }
    Path(args.out).write_text(json.dumps(out) + "\n")
    print(f"wrote {args.out}: {len(rows)} positions x {len(PROBE_IDS)} logits")


if __name__ == "__main__":
    main()
