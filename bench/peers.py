#!/usr/bin/env python3
"""Measurements for bench/run_benchmarks.sh: Basis and its peers, each the same
way, on the same GGUF and thread count, and the markdown report that compares them.

  llama.cpp (llama-cpp-python) is the inference peer, PyTorch (transformers) the
  training peer. Every measurement subcommand appends one JSON line to --out (and
  prints it); `report` turns those lines into the table.

  infer-basis  --basis BIN MODEL      prefill and decode tok/s of `basis generate`, on a
                                      128-token prompt and on skill-sized ones (1.5k and
                                      4k tokens: prefill, then decode after it), with the
                                      attention kernel's share of the prefill
  infer-llama  MODEL                  the same measured in llama.cpp (one llama_decode
                                      per generated token, greedy from the last logits)
  train-basis  --bench-train BIN [--mode full|lora] MODEL BATCH SEQ STEPS
               the trainer's update step (trainer/examples/bench_update.rs)
  train-torch  [--mode full|lora] MODEL BATCH SEQ STEPS
               the same step in PyTorch (LoRA through PEFT)
  report       RESULTS.jsonl          the markdown table
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

# 128 tokens of code (SmolLM2's tokenizer) for the prefill measurement: both sides
# tokenize this exact text, and the counts they used are reported.
PREFILL_PROMPT = '''def merge_intervals(intervals):
    """Merge overlapping [start, end] intervals and return them sorted."""
    if not intervals:
        return []
    ordered = sorted(intervals, key=lambda pair: pair[0])
    merged = [list(ordered[0])]
    for start, end in ordered[1:]:
        last = merged[-1]
        if start <= last[1]:
            last[1] = max(last[1], end)
        else:
            merged.append([start, end])
    return merged


def chunked(values, size):
    if size'''

# A short raw-code prompt for the decode measurement, one the model goes on
# writing code after rather than ending.
DECODE_PROMPT = '''import os
import sys


def walk_tree(root):
    """Yield every file below root, depth first."""'''

# Skill-sized prompts: the made-up Python module of the long-prompt reference
# (model/tests/reference/make_long_reference.py), cut after as many functions as
# reach each target; both sides tokenize the same text and report their counts.
LONG_TARGETS = (1500, 4000)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "model", "tests", "reference"))
from make_long_reference import module_text  # noqa: E402


def long_prompt(count_tokens, target):
    """The shortest cut of the module with at least `target` tokens."""
    lo, hi = 1, 1
    while count_tokens(module_text(hi)) < target:
        lo, hi = hi, hi * 2
    while lo < hi:
        mid = (lo + hi) // 2
        if count_tokens(module_text(mid)) >= target:
            hi = mid
        else:
            lo = mid + 1
    return module_text(lo)


# The token ids of trainer/examples/bench_update.rs: (i * 2654435761) % vocab in
# wrapping u32 arithmetic, over a (batch, seq + 1) grid.
ID_MULTIPLIER = 2654435761


class Failure(Exception):
    """A measurement that could not be taken; recorded, and shown in the report."""


def error_line(stderr):
    """The line of a failed program's stderr that says what went wrong."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("error"):
            return line
    return lines[-1] if lines else "(no output)"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def emit(args, rec):
    line = json.dumps(rec)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(line + "\n")


# -------------------------------------------------------------------- Basis --

# Without RUST_BACKTRACE a failing basis says what failed in one line.
BASIS_ENV = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}

STATS_RE = re.compile(r"^(prefill|decode): (\d+) tokens, ([0-9.]+) tok/s$")
ATTENTION_RE = re.compile(r"^(prefill|decode) attention: ([0-9.]+) GFLOP in ([0-9.]+) s$")


def basis_generate(args, prompt, max_tokens, binary=None):
    """One `basis generate` run; returns {"prefill": (n, rate), "decode": (n, rate)}
    and, where the CPU attention kernel ran, {"prefill_attention": (GFLOP, s)}."""
    cmd = [
        binary or args.basis, "generate", "--model", args.model, "--raw", "--temperature", "0",
        "--max-tokens", str(max_tokens), "--stats", "--prompt", prompt,
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, env=BASIS_ENV)
    if p.returncode != 0:
        log(p.stderr)
        raise Failure(f"basis generate exited with {p.returncode}: {error_line(p.stderr)}")
    stats = {}
    for line in p.stderr.splitlines():
        m = STATS_RE.match(line.strip())
        if m:
            stats[m.group(1)] = (int(m.group(2)), float(m.group(3)))
        m = ATTENTION_RE.match(line.strip())
        if m:
            stats[f"{m.group(1)}_attention"] = (float(m.group(2)), float(m.group(3)))
    if not {"prefill", "decode"} <= set(stats):
        log(p.stderr)
        raise Failure("no --stats lines in the stderr of basis generate")
    return stats


def cmd_infer_basis(args):
    p = subprocess.run(
        [args.basis, "tokenize", "--model", args.model, "--text", PREFILL_PROMPT],
        capture_output=True, text=True, env=BASIS_ENV,
    )
    if p.returncode != 0:
        log(p.stderr)
        raise Failure(f"basis tokenize exited with {p.returncode}: {error_line(p.stderr)}")
    ids = json.loads(p.stdout)
    if args.ids_out:
        with open(args.ids_out, "w") as f:
            json.dump(ids, f)

    # With a baseline, the two binaries take turns (baseline, current, baseline,
    # ...), so a slow minute on this shared machine hits both alike.
    binaries = [(args.label, args.basis)]
    if args.baseline:
        binaries = [("baseline", args.baseline), (args.label, args.basis)]
    runs = {name: {"prefill": [], "decode": []} for name, _ in binaries}
    for i in range(args.repeats):
        for name, binary in binaries:
            n, rate = basis_generate(args, PREFILL_PROMPT, 1, binary)["prefill"]
            log(f"{name} prefill run {i + 1}: {n} tokens, {rate:.1f} tok/s")
            runs[name]["prefill"].append((n, rate))
    for i in range(args.repeats):
        for name, binary in binaries:
            n, rate = basis_generate(args, DECODE_PROMPT, args.decode_tokens + 1, binary)["decode"]
            log(f"{name} decode run {i + 1}: {n} tokens, {rate:.1f} tok/s")
            runs[name]["decode"].append((n, rate))
    infer_long_basis(args, binaries)
    for name, _ in binaries:
        prefill, decode = runs[name]["prefill"], runs[name]["decode"]
        best_prefill = max(prefill, key=lambda x: x[1])
        best_decode = max(decode, key=lambda x: x[1])
        rec = {
            "impl": name, "what": "infer",
            "prefill_tokens": best_prefill[0], "prefill_tok_s": best_prefill[1],
            "prefill_runs": [r for _, r in prefill],
            "decode_tokens": best_decode[0], "decode_tok_s": best_decode[1],
            "decode_runs": [r for _, r in decode],
        }
        if name != "baseline":
            rec["tokenized_prefill_tokens"] = len(ids)
        else:
            rec["rev"] = args.baseline_rev
        emit(args, rec)


def infer_long_basis(args, binaries):
    """Prefill and decode after each skill-sized prompt, binaries taking turns;
    one `infer-long` record per binary and target."""
    def count_tokens(text):
        p = subprocess.run([args.basis, "tokenize", "--model", args.model, "--text", text],
                           capture_output=True, text=True, env=BASIS_ENV)
        if p.returncode != 0:
            raise Failure(f"basis tokenize exited with {p.returncode}: {error_line(p.stderr)}")
        return len(json.loads(p.stdout))

    for target in LONG_TARGETS:
        prompt = long_prompt(count_tokens, target)
        runs = {name: [] for name, _ in binaries}
        for i in range(args.repeats):
            for name, binary in binaries:
                st = basis_generate(args, prompt, args.decode_tokens + 1, binary)
                log(f"{name} {target}-token prompt run {i + 1}: prefill {st['prefill'][0]} tokens "
                    f"{st['prefill'][1]:.1f} tok/s, decode {st['decode'][1]:.1f} tok/s")
                runs[name].append(st)
        for name, _ in binaries:
            best_p = max(runs[name], key=lambda st: st["prefill"][1])
            best_d = max(runs[name], key=lambda st: st["decode"][1])
            rec = {
                "impl": name, "what": "infer-long", "target": target,
                "prefill_tokens": best_p["prefill"][0], "prefill_tok_s": best_p["prefill"][1],
                "decode_tokens": best_d["decode"][0], "decode_tok_s": best_d["decode"][1],
            }
            if "prefill_attention" in best_p:
                gflop, secs = best_p["prefill_attention"]
                rec.update(prefill_attention_gflop=gflop, prefill_attention_s=secs)
            if name == "baseline":
                rec["rev"] = args.baseline_rev
            emit(args, rec)


def cmd_train_basis(args):
    cmd = [args.bench_train, args.mode, args.model, str(args.batch), str(args.seq), str(args.steps)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASIS_ENV)
    first_loss, err = None, []
    for line in p.stderr:
        err.append(line)
        log(f"basis train: {line.rstrip()}")
        m = re.match(r"step 0: loss ([-0-9.naif]+)", line)
        if m:
            first_loss = float(m.group(1))
    out = p.stdout.read()
    if p.wait() != 0:
        raise Failure(f"bench_update exited with {p.returncode}: {error_line(''.join(err))}")
    rec = json.loads(out.strip().splitlines()[-1])
    rec["what"] = "train"
    rec["first_loss"] = first_loss
    emit(args, rec)


# ---------------------------------------------------------------- llama.cpp --


def cmd_infer_llama(args):
    import numpy as np
    import llama_cpp
    from llama_cpp import Llama

    llm = Llama(
        model_path=args.model,
        n_ctx=8192,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        verbose=False,
    )
    n_vocab = llm.n_vocab()
    eos = llm.token_eos()

    def argmax_last():
        # Logits of the last token of the latest llm.eval (llm.scores is not filled
        # unless logits_all is on).
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        return int(np.argmax(logits))

    def tokenize(text):
        # Raw text, no BOS: the GGUF says add_bos_token = false, and `basis generate
        # --raw` adds no special tokens.
        return llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)

    prefill_ids = tokenize(PREFILL_PROMPT)
    decode_ids = tokenize(DECODE_PROMPT)

    # Prefill: the whole prompt in one llm.eval (n_batch 512 > prompt) after a reset.
    prefill = []
    for i in range(args.repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prefill_ids)
        rate = len(prefill_ids) / (time.perf_counter() - start)
        log(f"llama.cpp prefill run {i + 1}: {len(prefill_ids)} tokens, {rate:.1f} tok/s")
        prefill.append(rate)

    # Decode: after the prompt, one llm.eval per token with greedy (argmax) sampling;
    # only those evals and their argmax are timed.
    decode = []
    hit_eos = False
    for i in range(args.repeats):
        llm.reset()
        llm.eval(decode_ids)
        tok = argmax_last()
        start = time.perf_counter()
        for _ in range(args.decode_tokens):
            llm.eval([tok])
            tok = argmax_last()
            hit_eos = hit_eos or tok == eos
        rate = args.decode_tokens / (time.perf_counter() - start)
        log(f"llama.cpp decode run {i + 1}: {args.decode_tokens} tokens, {rate:.1f} tok/s")
        decode.append(rate)

    rec = {
        "impl": args.label, "what": "infer",
        "version": getattr(llama_cpp, "__version__", "?"),
        "prefill_tokens": len(prefill_ids), "prefill_tok_s": max(prefill),
        "prefill_runs": prefill,
        "decode_tokens": args.decode_tokens, "decode_tok_s": max(decode),
        "decode_runs": decode, "decode_hit_eos": hit_eos,
    }
    if args.basis_ids and os.path.exists(args.basis_ids):
        with open(args.basis_ids) as f:
            rec["prefill_ids_equal_basis"] = json.load(f) == prefill_ids
    emit(args, rec)

    # Skill-sized prompts: prefill, then decode after it, as above.
    for target in LONG_TARGETS:
        ids = tokenize(long_prompt(lambda text: len(tokenize(text)), target))
        prefill, decode = [], []
        for i in range(args.repeats):
            llm.reset()
            start = time.perf_counter()
            llm.eval(ids)
            prefill.append(len(ids) / (time.perf_counter() - start))
            tok = argmax_last()
            start = time.perf_counter()
            for _ in range(args.decode_tokens):
                llm.eval([tok])
                tok = argmax_last()
            decode.append(args.decode_tokens / (time.perf_counter() - start))
            log(f"llama.cpp {target}-token prompt run {i + 1}: prefill {len(ids)} tokens "
                f"{prefill[-1]:.1f} tok/s, decode {decode[-1]:.1f} tok/s")
        emit(args, {
            "impl": args.label, "what": "infer-long", "target": target,
            "version": getattr(llama_cpp, "__version__", "?"),
            "prefill_tokens": len(ids), "prefill_tok_s": max(prefill),
            "decode_tokens": args.decode_tokens, "decode_tok_s": max(decode),
        })




# ------------------------------------------------------------------ PyTorch --


def cmd_train_torch(args):
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion bar
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    path = os.path.abspath(args.model)
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    )
    version = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if args.mode == "lora":
        # The trainer's default adapter: rank 8, alpha 16, on the attention projections.
        import peft

        cfg = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                              target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        model = peft.get_peft_model(model, cfg)
        version += f", peft {peft.__version__}"
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    trainable = sum(p.numel() for p in params)

    vocab = model.config.vocab_size
    b, s = args.batch, args.seq
    ids = [((i * ID_MULTIPLIER) & 0xFFFFFFFF) % vocab for i in range(b * (s + 1))]
    grid = torch.tensor(ids, dtype=torch.long).view(b, s + 1)
    inputs, targets = grid[:, :s], grid[:, 1:]

    times, first_loss = [], None
    for step in range(args.steps + 1):
        start = time.perf_counter()
        logits = model(input_ids=inputs).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        secs = time.perf_counter() - start
        value = loss.item()
        first_loss = value if first_loss is None else first_loss
        log(f"pytorch train: step {step}: loss {value:.4f}, {secs:.2f}s")
        # As in bench_update, the first step is a warm-up and is not counted.
        if step > 0:
            times.append(secs)
    mean = sum(times) / len(times)
    emit(args, {
        "impl": "pytorch", "what": "train", "mode": args.mode, "trainable": trainable,
        "version": version,
        "batch": b, "seq": s, "steps": args.steps,
        "secs_per_step": round(mean, 4), "tok_per_s": round(b * s / mean, 2),
        "first_loss": round(first_loss, 4),
    })


# ------------------------------------------------------------------- report --


def cell(rec, key):
    """A table cell: the figure, or why there is none."""
    if rec is None:
        return None, "not run"
    if "error" in rec:
        return None, "failed"
    x = rec.get(key)
    if x is None:
        return None, "n/a"
    return x, f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def gguf_parameters(path):
    """The number of weights in a GGUF file (every tensor's elements)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        return None
    return int(sum(int(t.n_elements) for t in GGUFReader(path).tensors))


def cmd_report(args):
    with open(args.results) as f:
        recs = [json.loads(line) for line in f if line.strip()]

    def find(impl, what, **kw):
        for r in recs:
            if r["impl"] == impl and r["what"] == what and all(r.get(k) == v for k, v in kw.items()):
                return r
        return None

    rows, notes = [], []
    bi, li = find("basis", "infer"), find("llama.cpp", "infer")
    if bi or li:
        ok_b = bi if bi and "error" not in bi else {}
        ok_l = li if li and "error" not in li else {}
        def count(key):
            nb, nl = ok_b.get(key, "?"), ok_l.get(key, "?")
            return f"{nb}" if nb == nl else f"{nb} (basis) / {nl} (llama.cpp)"

        rows.append((f"prefill, {count('prefill_tokens')} prompt tokens (tok/s, best of 3)",
                     bi, li, "prefill_tok_s", "llama.cpp"))
        rows.append((f"decode, {count('decode_tokens')} greedy tokens (tok/s, best of 3)",
                     bi, li, "decode_tok_s", "llama.cpp"))
        if ok_b and ok_l and ok_b["prefill_tokens"] != ok_l["prefill_tokens"]:
            notes.append(f"prefill token counts DIFFER: basis {ok_b['prefill_tokens']}, "
                         f"llama.cpp {ok_l['prefill_tokens']}")
        if "prefill_ids_equal_basis" in ok_l:
            notes.append("prefill prompt: token ids identical in basis and llama.cpp"
                         if ok_l["prefill_ids_equal_basis"] else "prefill prompt: token ids DIFFER")
        if ok_b and ok_l and ok_b["decode_tokens"] < ok_l["decode_tokens"]:
            notes.append(f"basis stopped early in decode (end of sequence) after {ok_b['decode_tokens']} tokens")
        if ok_l.get("decode_hit_eos"):
            notes.append("llama.cpp's greedy decode produced end-of-sequence; it was fed back and decoding went on")
    peak = find("machine", "fma_peak")
    if peak and (ok_b or ok_l):
        params = gguf_parameters(args.model_path) if args.model_path else None
        if params:
            def share(rec):
                gflops = 2 * params * rec["prefill_tok_s"] / 1e9
                text = f"{gflops:.1f} GFLOP/s ({100 * gflops / peak['gflops']:.0f}% of the f32 peak"
                if peak.get("int8_gops"):
                    text += f", {100 * gflops / peak['int8_gops']:.0f}% of the int8 peak"
                return text + ")"
            parts = [f"basis {share(ok_b)}" if ok_b else None,
                     f"llama.cpp {share(ok_l)}" if ok_l else None]
            notes.append(f"prefill arithmetic (2 x {params:,} parameters x tok/s, which counts the "
                         "output layer for every prompt token though both run it for the last only): "
                         + ", ".join(p for p in parts if p)
                         + f"; measured f32 FMA peak of this machine on {peak['threads']} threads "
                         f"({peak['simd']}): {peak['gflops']:.1f} GFLOP/s"
                         + (f"; its int8 multiply-add peak ({peak['int8_simd']}, the instruction "
                            f"basis's quantized prefill runs on): {peak['int8_gops']:.1f} G op/s"
                            if peak.get("int8_gops") else ""))
    params = gguf_parameters(args.model_path) if args.model_path else None
    for target in LONG_TARGETS:
        lb, ll = find("basis", "infer-long", target=target), find("llama.cpp", "infer-long", target=target)
        lbase = find("baseline", "infer-long", target=target)
        if not (lb or ll):
            continue
        nb = (lb or {}).get("prefill_tokens", "?")
        nl = (ll or {}).get("prefill_tokens", "?")
        count = f"{nb}" if nb == nl else f"{nb} (basis) / {nl} (llama.cpp)"
        rows.append((f"prefill, {count}-token prompt (tok/s, best of 3)",
                     lb, ll, "prefill_tok_s", "llama.cpp"))
        rows.append((f"decode after the {count}-token prompt, {(lb or ll).get('decode_tokens', '?')} "
                     "greedy tokens (tok/s, best of 3)", lb, ll, "decode_tok_s", "llama.cpp"))
        if lbase:
            rev = lbase.get("rev", "?")
            rows.append((f"prefill, {nb}-token prompt, vs basis at `{rev}`", lb, lbase,
                         "prefill_tok_s", f"basis@{rev}"))
            rows.append((f"decode after it vs basis at `{rev}`", lb, lbase,
                         "decode_tok_s", f"basis@{rev}"))
        if lb and "prefill_attention_s" in lb and peak and params:
            secs = lb["prefill_tokens"] / lb["prefill_tok_s"]
            att_s, att_gflop = lb["prefill_attention_s"], lb["prefill_attention_gflop"]
            att_rate = att_gflop / att_s
            rest_rate = 2 * params * lb["prefill_tokens"] / 1e9 / max(secs - att_s, 1e-9)
            text = (f"prefill of {nb} tokens in basis: {secs:.2f} s, of which attention "
                    f"{att_s:.2f} s ({100 * att_s / secs:.0f}%) at {att_gflop:.1f} GFLOP -> "
                    f"{att_rate:.1f} GFLOP/s = {100 * att_rate / peak['gflops']:.0f}% of the f32 peak; "
                    f"the rest (matmuls, 2 x parameters x tokens in the remaining "
                    f"{secs - att_s:.2f} s) {rest_rate:.1f} GFLOP/s")
            if peak.get("int8_gops"):
                text += f" = {100 * rest_rate / peak['int8_gops']:.0f}% of the int8 peak"
            notes.append(text)
    # The AVX2 path on an AVX-512 machine: basis with BASIS_KERNELS=avx2 against
    # llama.cpp built without AVX-512, the laptops' case.
    ab, al = find("basis-avx2", "infer"), find("llama.cpp-avx2", "infer")
    if ab or al:
        rows.append(("AVX2 path: prefill, 128-token prompt", ab, al, "prefill_tok_s",
                     "llama.cpp without AVX-512"))
        rows.append(("AVX2 path: decode, 128 tokens", ab, al, "decode_tok_s",
                     "llama.cpp without AVX-512"))
    for target in LONG_TARGETS:
        ab = find("basis-avx2", "infer-long", target=target)
        al = find("llama.cpp-avx2", "infer-long", target=target)
        if ab or al:
            n = (ab or al).get("prefill_tokens", "?")
            rows.append((f"AVX2 path: prefill, {n}-token prompt", ab, al, "prefill_tok_s",
                         "llama.cpp without AVX-512"))
            rows.append(("AVX2 path: decode after it", ab, al, "decode_tok_s",
                         "llama.cpp without AVX-512"))
    base = find("baseline", "infer")
    if base:
        rev = base.get("rev", "?")
        rows.append((f"prefill vs basis at `{rev}` (same prompt, runs alternating)",
                     bi, base, "prefill_tok_s", f"basis@{rev}"))
        rows.append((f"decode vs basis at `{rev}` (same prompt, runs alternating)",
                     bi, base, "decode_tok_s", f"basis@{rev}"))
        if ok_b and "error" not in base and ok_b["decode_tokens"] != base["decode_tokens"]:
            notes.append(f"decode token counts differ: basis {ok_b['decode_tokens']}, "
                         f"basis@{rev} {base['decode_tokens']} (a different greedy path)")
    shapes = {(r.get("mode", "full"), r["batch"], r["seq"]) for r in recs if r["what"] == "train"}
    for mode, b, s in sorted(shapes):
        bt = find("basis", "train", mode=mode, batch=b, seq=s)
        pt = find("pytorch", "train", mode=mode, batch=b, seq=s)
        steps = (bt or pt)["steps"]
        what = ("f32 full fine-tune" if mode == "full"
                else "f32 LoRA r8 on q/k/v/o (PyTorch: PEFT)")
        rows.append((f"training update {b}x{s}, {what} + AdamW (tok/s, mean of {steps} steps)",
                     bt, pt, "tok_per_s", "PyTorch"))
        if bt and pt and bt.get("first_loss") is not None and pt.get("first_loss") is not None:
            notes.append(f"training {mode} {b}x{s}: first-step loss basis {bt['first_loss']:.4f}, "
                         f"PyTorch {pt['first_loss']:.4f} (same weights and ids, so they should agree)")
        if bt and pt and bt.get("trainable") and pt.get("trainable"):
            same = "the same" if bt["trainable"] == pt["trainable"] else "DIFFERENT"
            notes.append(f"training {mode}: {bt['trainable']:,} trainable numbers in basis, "
                         f"{pt['trainable']:,} in PyTorch ({same})")
        if bt and "frozen_weight_grads_skipped" in bt:
            notes.append(f"training {mode} {b}x{s}: basis computed {bt['weight_grads']} weight gradients "
                         f"and skipped {bt['frozen_weight_grads_skipped']} of frozen weights over "
                         f"{steps + 1} steps")
    for r in recs:
        if "error" in r:
            shape = f" {r['batch']}x{r['seq']}" if r["what"] == "train" else ""
            notes.append(f"FAILED {r['impl']} {r['what']}{shape}: {r['error']}")

    versions = sorted({f"{r['impl']}: {r['version']}" for r in recs if r.get("version")})
    lines = [
        f"# Basis vs peers ({'quick' if args.quick else 'full'} run)",
        "",
        f"- date: {args.date}",
        f"- CPU: {args.cpu}",
        f"- threads: {args.threads} (RAYON_NUM_THREADS for basis, n_threads and "
        "n_threads_batch for llama.cpp, torch.set_num_threads for PyTorch)",
        f"- GGUF: `{args.model_name}`, sha256 `{args.sha256}`",
        f"- basis: {args.basis_version}",
    ] + [f"- {v}" for v in versions] + [
        "",
        "| measure | basis | peer | ratio (basis/peer) |",
        "|---|---|---|---|",
    ]
    for label, brec, prec, key, peer_name in rows:
        (bx, btext), (px, ptext) = cell(brec, key), cell(prec, key)
        ratio = f"{bx / px:.2f}" if bx and px else "n/a"
        lines.append(f"| {label} | {btext} | {ptext} ({peer_name}) | {ratio} |")
    lines += ["", "All figures are tok/s, higher is better: a ratio above 1 means Basis is faster."]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.md_out:
        with open(args.md_out, "w") as f:
            f.write(text)


IMPLS = {"infer-basis": "basis", "infer-llama": "llama.cpp", "train-basis": "basis", "train-torch": "pytorch"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def measure(name, func):
        s = sub.add_parser(name)
        s.add_argument("model")
        s.add_argument("--out", help="append the JSON line to this file")
        s.set_defaults(func=func)
        return s

    s = measure("infer-basis", cmd_infer_basis)
    s.add_argument("--basis", required=True, help="the basis binary")
    s.add_argument("--decode-tokens", type=int, default=128)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--ids-out", help="write basis's ids for the prefill prompt here")
    s.add_argument("--baseline", help="a basis binary built from an earlier commit, measured in turn")
    s.add_argument("--baseline-rev", help="the commit the baseline was built from")
    s.add_argument("--label", default="basis",
                   help="the records' name (basis-avx2 for the run with BASIS_KERNELS=avx2)")

    s = measure("infer-llama", cmd_infer_llama)
    s.add_argument("--threads", type=int, required=True)
    s.add_argument("--decode-tokens", type=int, default=128)
    s.add_argument("--repeats", type=int, default=3)
    s.add_argument("--basis-ids", help="basis's ids for the prefill prompt, to compare")
    s.add_argument("--label", default="llama.cpp",
                   help="the records' name (llama.cpp-avx2 for a build without AVX-512)")

    for name, func in (("train-basis", cmd_train_basis), ("train-torch", cmd_train_torch)):
        s = measure(name, func)
        s.add_argument("batch", type=int)
        s.add_argument("seq", type=int)
        s.add_argument("steps", type=int)
        s.add_argument("--mode", choices=("full", "lora"), default="full")
        if name == "train-basis":
            s.add_argument("--bench-train", required=True, help="the bench_update example binary")
        else:
            s.add_argument("--threads", type=int, required=True)

    s = sub.add_parser("report")
    s.add_argument("results")
    for opt in ("--date", "--cpu", "--threads", "--model-name", "--sha256", "--basis-version"):
        s.add_argument(opt, required=True)
    s.add_argument("--quick", action="store_true")
    s.add_argument("--model-path", help="the GGUF, to count its parameters for prefill's GFLOP/s")
    s.add_argument("--md-out", help="also write the markdown here")
    s.set_defaults(func=cmd_report)

    args = p.parse_args()
    if args.cmd == "report":
        args.func(args)
        return
    try:
        args.func(args)
    except Exception as e:  # noqa: BLE001 - any failure becomes a row marked failed
        if not isinstance(e, Failure):
            import traceback

            traceback.print_exc()
        rec = {"impl": IMPLS[args.cmd], "what": args.cmd.split("-")[0], "error": str(e) or type(e).__name__}
        if rec["what"] == "train":
            rec.update(batch=args.batch, seq=args.seq, steps=args.steps, mode=args.mode)
        log(f"FAILED: {rec['error']}")
        emit(args, rec)
        sys.exit(3)


if __name__ == "__main__":
    main()
