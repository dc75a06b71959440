//! `basis generate` and `basis tokenize`: the model on the command line. Their
//! interfaces are fixed (scripts depend on them): generated text only on stdout,
//! `--stats` lines on stderr.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use basis_model::{LanguageModel, Message, Precision, SamplingParams, Tokenizer};
use clap::Args;

use crate::store::{self, Store};

#[derive(Args)]
pub struct GenerateArgs {
    /// A model name from the store, or a path (default: smollm2-135m-instruct,
    /// pulled on first use).
    #[arg(long)]
    model: Option<String>,
    /// Use the prompt as it is, without the model's chat template.
    #[arg(long)]
    raw: bool,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 256, value_parser = crate::at_least_one)]
    max_tokens: usize,
    /// Random seed (default: a fresh one each run).
    #[arg(long)]
    seed: Option<u64>,
    /// Print prefill and decode speed to stderr.
    #[arg(long)]
    stats: bool,
    /// The prompt (read from stdin when absent).
    #[arg(long)]
    prompt: Option<String>,
}

#[derive(Args)]
pub struct TokenizeArgs {
    /// A model name from the store, or a path.
    #[arg(long)]
    model: Option<String>,
    /// Read special-token markers written in the text (e.g. `<|im_end|>`) as
    /// their control tokens, as a chat template's own markers are read.
    #[arg(long, conflicts_with = "plain")]
    special: bool,
    /// Read the whole text as text, markers included (the default; this is how
    /// file contents, issues and instructions reach the model).
    #[arg(long)]
    plain: bool,
    /// The text to tokenize.
    #[arg(long)]
    text: String,
}

/// The weights' path for `--model`: an existing path, a stored model, or the default
/// model (pulled if missing).
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    Ok(resolve(spec)?.weights)
}

/// A model named on the command line or in the server's settings: its weights, and
/// for a stored model its directory (where its versions live).
pub fn resolve(spec: Option<&str>) -> Result<basis_model::registry::ModelSpec> {
    let store = Store::open()?;
    let name = spec.unwrap_or(store::DEFAULT_MODEL);
    let is_name = store::validate_name(name).is_ok();
    let stored = |m: &store::Manifest| basis_model::registry::ModelSpec {
        name: m.name.clone(),
        weights: store.weights_path(m),
        model_dir: Some(store.model_dir(&m.name)),
    };
    if let Some(m) = if is_name { store.manifest(name)? } else { None } {
        let spec = stored(&m);
        if spec.weights.exists() {
            return Ok(spec);
        }
        if store::known_model(name).is_none() {
            bail!(
                "model {name} is registered at {} but that path is gone",
                spec.weights.display()
            );
        }
    }
    if let Some(known) = store::known_model(name) {
        eprintln!("model {name} is not in the store yet; pulling it");
        let (m, _) = crate::pull::pull(&store, known)?;
        return Ok(stored(&m));
    }
    let path = PathBuf::from(name);
    if path.exists() {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_string());
        return Ok(basis_model::registry::ModelSpec {
            name,
            weights: path,
            model_dir: None,
        });
    }
    bail!("unknown model `{name}`: give a path, or pull it first with `basis model pull`")
}

pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    Ok(basis_model::load_tokenizer(path)?)
}

pub fn run_generate(args: GenerateArgs) -> Result<()> {
    let prompt = match args.prompt {
        Some(p) => p,
        None => {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                bail!("give the prompt with --prompt TEXT or on stdin");
            }
            let mut p = String::new();
            stdin
                .read_to_string(&mut p)
                .context("reading the prompt from stdin")?;
            p
        }
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let path = resolve_model(args.model.as_deref())?;
    let lm = LanguageModel::load(&path, Precision::Quantized, &basis_model::default_device())
        .with_context(|| format!("loading {}", path.display()))?;
    // A raw prompt is the author's own: its special-token markers are meant as
    // control tokens. A chat prompt's text is the user's message, read as text.
    let ids = if args.raw {
        lm.tokenizer.encode_with_special_tokens(&prompt)?
    } else {
        lm.chat_prompt(&[Message::user(prompt)], "")?.ids
    };
    let params = SamplingParams {
        temperature: args.temperature,
        max_tokens: args.max_tokens,
        seed: args.seed.unwrap_or_else(rand_seed),
        ..SamplingParams::default()
    };
    let mut out = std::io::stdout().lock();
    let mut write_err = None;
    let gen = lm.generate(
        &ids,
        &params,
        1,
        &mut |delta| {
            if write_err.is_none() {
                if let Err(e) = out
                    .write_all(delta.text.as_bytes())
                    .and_then(|_| out.flush())
                {
                    write_err = Some(e);
                }
            }
        },
        &|| false,
    )?;
    if let Some(e) = write_err {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e).context("writing to stdout");
        }
    }
    if out.is_terminal() {
        let _ = writeln!(out);
    }
    if args.stats {
        let rate = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let new_prompt = gen.prompt_tokens - gen.reused_prompt_tokens;
        eprintln!(
            "prefill: {new_prompt} tokens, {:.1} tok/s",
            rate(new_prompt, gen.prefill_secs)
        );
        eprintln!(
            "decode: {} tokens, {:.1} tok/s",
            gen.decode_tokens,
            rate(gen.decode_tokens, gen.decode_secs)
        );
        // The CPU attention kernel's part of each: its arithmetic and time,
        // for the benchmark's share of peak.
        for (phase, work) in [("prefill", &gen.prefill_work), ("decode", &gen.decode_work)] {
            if work.attention_nanos > 0 {
                eprintln!(
                    "{phase} attention: {:.6} GFLOP in {:.4} s",
                    work.attention_flops as f64 / 1e9,
                    work.attention_nanos as f64 / 1e9
                );
            }
        }
    }
    Ok(())
}

pub fn run_tokenize(args: TokenizeArgs) -> Result<()> {
    let path = resolve_model(args.model.as_deref())?;
    let tok = load_tokenizer(&path)?;
    let _ = args.plain;
    let ids = if args.special {
        tok.encode_with_special_tokens(&args.text)?
    } else {
        tok.encode(&args.text)?
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(&ids)?)?;
    Ok(())
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 ^ u64::from(std::process::id()))
        .unwrap_or(0)
}
