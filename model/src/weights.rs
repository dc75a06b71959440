//! Reading checkpoint tensors under one naming scheme, the Hugging Face one
//! (`model.layers.N.self_attn.q_proj.weight`), whatever the file format. GGUF names
//! are mapped onto it, and the Q/K rows that llama.cpp's converter permutes for its
//! interleaved RoPE are put back into the Hugging Face order, so that a LoRA adapter
//! trained here applies unchanged to the Hugging Face model (and vice versa).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::config::{Architecture, ModelConfig};
use crate::error::{Error, Result};
use crate::gguf_check;

/// How the transformer keeps its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Keep GGUF tensors in their quantized form (the serving path).
    Quantized,
    /// Dequantize everything to f32 (the training path; every op differentiable).
    F32,
}

/// One tensor as it comes out of the file.
pub(crate) enum RawWeight {
    Quantized(QTensor),
    Dense(Tensor),
}

impl RawWeight {
    pub(crate) fn to_dense(&self, device: &Device) -> Result<Tensor> {
        Ok(match self {
            RawWeight::Quantized(q) => q.dequantize(device)?,
            RawWeight::Dense(t) => t.to_dtype(DType::F32)?.to_device(device)?,
        })
    }

    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            RawWeight::Quantized(q) => q.shape().dims().to_vec(),
            RawWeight::Dense(t) => t.dims().to_vec(),
        }
    }
}

/// The metadata and tensor directory of a checkpoint on disk.
pub(crate) enum Checkpoint {
    Gguf {
        path: PathBuf,
        content: gguf_file::Content,
    },
    Safetensors {
        dir: PathBuf,
        tensors: HashMap<String, Tensor>,
    },
}

impl Checkpoint {
    pub(crate) fn open_gguf(path: &Path) -> Result<Self> {
        gguf_check::check_file(path)?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = catch(|| gguf_file::Content::read(&mut reader))
            .map_err(|e| Error::bad_file(path, e))?
            .map_err(|e| Error::bad_file(path, e))?;
        Ok(Checkpoint::Gguf {
            path: path.to_path_buf(),
            content,
        })
    }

    pub(crate) fn open_safetensors(dir: &Path, device: &Device) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| Error::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(Error::bad_file(
                dir,
                "no *.safetensors files in the directory",
            ));
        }
        let mut tensors = HashMap::new();
        for file in files {
            let loaded = catch(|| candle_core::safetensors::load(&file, device))
                .map_err(|e| Error::bad_file(&file, e))?
                .map_err(|e| Error::bad_file(&file, e))?;
            tensors.extend(loaded);
        }
        Ok(Checkpoint::Safetensors {
            dir: dir.to_path_buf(),
            tensors,
        })
    }

    pub(crate) fn gguf_metadata(&self) -> Option<&HashMap<String, Value>> {
        match self {
            Checkpoint::Gguf { content, .. } => Some(&content.metadata),
            Checkpoint::Safetensors { .. } => None,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        match self {
            Checkpoint::Gguf { path, .. } => path,
            Checkpoint::Safetensors { dir, .. } => dir,
        }
    }

    pub(crate) fn config(&self) -> Result<ModelConfig> {
        match self {
            Checkpoint::Gguf { path, content } => {
                let mut cfg = ModelConfig::from_gguf(&content.metadata, path)?;
                cfg.tie_word_embeddings = !content.tensor_infos.contains_key("output.weight");
                Ok(cfg)
            }
            Checkpoint::Safetensors { dir, tensors } => {
                let mut cfg = ModelConfig::from_hf_config(&dir.join("config.json"))?;
                if !tensors.contains_key("lm_head.weight") {
                    cfg.tie_word_embeddings = true;
                }
                Ok(cfg)
            }
        }
    }

    /// Reads all the tensors, keyed by their Hugging Face names.
    pub(crate) fn read_all(
        &self,
        cfg: &ModelConfig,
        precision: Precision,
        device: &Device,
    ) -> Result<HashMap<String, RawWeight>> {
        match self {
            Checkpoint::Safetensors { tensors, .. } => Ok(tensors
                .iter()
                .map(|(k, t)| (k.clone(), RawWeight::Dense(t.clone())))
                .collect()),
            Checkpoint::Gguf { path, content } => {
                let file = File::open(path).map_err(|e| Error::io(path, e))?;
                let mut reader = BufReader::new(file);
                let mut out = HashMap::new();
                for name in content.tensor_infos.keys() {
                    let Some(hf) = hf_name(name) else { continue };
                    let q = catch(|| content.tensor(&mut reader, name, device))
                        .map_err(|e| Error::bad_file(path, e))?
                        .map_err(|e| Error::bad_file(path, format!("tensor {name}: {e}")))?;
                    let q = if cfg.architecture == Architecture::Llama {
                        if hf.ends_with("q_proj.weight") {
                            unpermute_qk(q, cfg.num_heads, device)?
                        } else if hf.ends_with("k_proj.weight") {
                            unpermute_qk(q, cfg.num_kv_heads, device)?
                        } else {
                            q
                        }
                    } else {
                        q
                    };
                    let keep_quantized = precision == Precision::Quantized
                        && !matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
                    let w = if keep_quantized {
                        RawWeight::Quantized(q)
                    } else {
                        RawWeight::Dense(q.dequantize(device)?)
                    };
                    out.insert(hf, w);
                }
                Ok(out)
            }
        }
    }
}

/// Maps a GGUF tensor name onto its Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    let simple = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let hf_module = match module {
        "attn_norm" => "input_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_module}.{kind}"))
}

/// llama.cpp's converter reorders each head's rows from `[half, pair]` to
/// `[pair, half]` so that GGML's interleaved RoPE applies; this undoes it on the raw
/// rows (quantization blocks never cross a row, so any GGML type can be moved).
fn unpermute_qk(q: QTensor, n_head: usize, device: &Device) -> Result<QTensor> {
    let dtype = q.dtype();
    let shape = q.shape().clone();
    let (rows, cols) = shape.dims2()?;
    let data = q.data()?;
    let row_bytes = cols / dtype.block_size() * dtype.type_size();
    let permuted = unpermute_rows(&data, rows, row_bytes, n_head)?;
    let storage = QStorage::from_data(Cow::Owned(permuted), device, dtype)?;
    Ok(QTensor::new(storage, shape)?)
}

pub(crate) fn unpermute_rows(
    data: &[u8],
    rows: usize,
    row_bytes: usize,
    n_head: usize,
) -> Result<Vec<u8>> {
    if n_head == 0 || !rows.is_multiple_of(2 * n_head) || data.len() != rows * row_bytes {
        return Err(Error::InvalidArgument(format!(
            "cannot un-permute {rows} rows of {row_bytes} bytes for {n_head} heads"
        )));
    }
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                // Hugging Face row (h, i, j) is stored by GGUF at (h, j, i).
                let dst = h * head_dim + i * half + j;
                let src = h * head_dim + j * 2 + i;
                out[dst * row_bytes..(dst + 1) * row_bytes]
                    .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
            }
        }
    }
    Ok(out)
}

/// Runs a third-party parser, turning a panic on malformed input into an error.
fn catch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the reader panicked".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // Build HF rows 0..8 for 2 heads of dim 4, permute as llama.cpp's converter
        // does (reshape(h, 2, d/2).swapaxes(1, 2)), and check we get them back.
        let (n_head, head_dim) = (2, 4);
        let hf: Vec<u8> = (0..8u8).collect();
        let mut gguf = vec![0u8; 8];
        for h in 0..n_head {
            for i in 0..2 {
                for j in 0..head_dim / 2 {
                    gguf[h * head_dim + j * 2 + i] = hf[h * head_dim + i * (head_dim / 2) + j];
                }
            }
        }
        assert_eq!(gguf, vec![0, 2, 1, 3, 4, 6, 5, 7]);
        assert_eq!(unpermute_rows(&gguf, 8, 1, n_head).unwrap(), hf);
    }

    #[test]
    fn gguf_names_map_to_hf_names() {
        assert_eq!(
            hf_name("blk.12.attn_q.bias").unwrap(),
            "model.layers.12.self_attn.q_proj.bias"
        );
        assert_eq!(
            hf_name("blk.0.ffn_down.weight").unwrap(),
            "model.layers.0.mlp.down_proj.weight"
        );
        assert_eq!(
            hf_name("token_embd.weight").unwrap(),
            "model.embed_tokens.weight"
        );
        assert!(hf_name("rope_freqs.weight").is_none());
    }
}
