//! Keys and values of past positions, per layer, in buffers that grow by doubling
//! so that a decode step writes one position in place instead of copying the cache.
//!
//! On the CPU in f32 each layer keeps its keys transposed instead, head dimension
//! by position, the layout the fused attention reads a query's scores from
//! ([`crate::ops::cached_attention`]): each position is transposed once, when it
//! is appended, instead of the whole cache at every step.
//!
//! A cache made [`KvCache::half`] (the quantized serving path's) stores keys and
//! values in f16 there: a decoding step over a long prompt reads every cached
//! key and value, and half the bytes is about half the time (llama.cpp's cache
//! is f16 too). Both prefill and decode read the rounded values, so a position's
//! numbers still do not depend on how the prompt was split.

use candle_core::{DType, Tensor};

use crate::error::{Error, Result};

#[derive(Clone)]
enum Keys {
    /// (batch, kv_heads, capacity, head_dim)
    Rows(Tensor),
    /// (batch, kv_heads, head_dim, capacity), where the fused attention runs
    /// (see the module docs).
    Transposed(Tensor),
}

#[derive(Clone)]
struct LayerCache {
    k: Keys,
    /// (batch, kv_heads, capacity, head_dim)
    v: Tensor,
}

/// The KV cache of one batch of sequences that all have the same length.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    len: usize,
    /// Keys and values in f16 where the fused attention reads them.
    half: bool,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
            half: false,
        }
    }

    /// This cache with keys and values in f16 where the fused attention runs
    /// (see the module docs).
    pub fn half(mut self) -> Self {
        self.half = true;
        self
    }

    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of sequences in the batch (0 when empty).
    pub fn batch(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .next()
            .map_or(0, |l| l.v.dims()[0])
    }

    /// Appends `t` positions to layer `layer` and returns the keys and values of all
    /// positions so far (the keys as a view of the transposed ones where the cache
    /// keeps those: see [`KvCache::keys_transposed`]). `advance` must follow once
    /// every layer has appended.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let needed = self.len + t;
        let transposed = crate::ops::fused(k);
        let dtype = if transposed && self.half {
            DType::F16
        } else {
            k.dtype()
        };
        let (k, v) = (k.to_dtype(dtype)?, v.to_dtype(dtype)?);
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidArgument(format!("no layer {layer} in the cache")))?;
        let grow = match slot {
            Some(c) => c.v.dim(2)? < needed,
            None => true,
        };
        if grow {
            let cap = needed.next_power_of_two().max(64);
            let (b, h, _, d) = k.dims4()?;
            let nv = Tensor::zeros((b, h, cap, d), dtype, v.device())?;
            let nk = if transposed {
                Keys::Transposed(Tensor::zeros((b, h, d, cap), dtype, k.device())?)
            } else {
                Keys::Rows(Tensor::zeros((b, h, cap, d), dtype, k.device())?)
            };
            if let Some(old) = slot.as_ref() {
                if self.len > 0 {
                    nv.slice_set(&old.v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    match (&nk, &old.k) {
                        (Keys::Rows(n), Keys::Rows(o)) => {
                            n.slice_set(&o.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?
                        }
                        (Keys::Transposed(n), Keys::Transposed(o)) => {
                            n.slice_set(&o.narrow(3, 0, self.len)?.contiguous()?, 3, 0)?
                        }
                        _ => {
                            return Err(Error::InvalidArgument(
                                "keys appended to a cache on another device".into(),
                            ))
                        }
                    }
                }
            }
            *slot = Some(LayerCache { k: nk, v: nv });
        }
        let c = slot.as_ref().expect("allocated above");
        c.v.slice_set(&v.contiguous()?, 2, self.len)?;
        let keys = match &c.k {
            Keys::Rows(kc) => {
                kc.slice_set(&k.contiguous()?, 2, self.len)?;
                kc.narrow(2, 0, needed)?
            }
            Keys::Transposed(kt) => {
                kt.slice_set(&k.transpose(2, 3)?.contiguous()?, 3, self.len)?;
                kt.narrow(3, 0, needed)?.transpose(2, 3)?
            }
        };
        Ok((keys, c.v.narrow(2, 0, needed)?))
    }

    /// Layer `layer`'s keys transposed, (batch, kv_heads, head_dim, positions),
    /// through the positions appended so far and the `t` of the step under way
    /// (`append` first), where the cache keeps them (see the module docs).
    pub(crate) fn keys_transposed(&self, layer: usize, t: usize) -> Result<Option<Tensor>> {
        match self.layers.get(layer).and_then(|l| l.as_ref()) {
            Some(LayerCache {
                k: Keys::Transposed(kt),
                ..
            }) => Ok(Some(kt.narrow(3, 0, self.len + t)?)),
            _ => Ok(None),
        }
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Bytes held by the buffers (allocated capacity, not only the used positions).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|c| {
                let k = match &c.k {
                    Keys::Rows(k) | Keys::Transposed(k) => k,
                };
                (k.elem_count() + c.v.elem_count()) * c.v.dtype().size_in_bytes()
            })
            .sum()
    }

    /// Forgets every position from `len` on (the buffers stay).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// A deep copy of the first `len` positions with room for `extra` more, the
    /// batch of one sequence repeated `n` times (the sampled group shares the prompt).
    pub fn fork(&self, n: usize, extra: usize) -> Result<Self> {
        let cap = (self.len + extra).max(1);
        let layers = self
            .layers
            .iter()
            .map(|l| {
                l.as_ref()
                    .map(|c| -> Result<LayerCache> {
                        // Positions along `axis`: 2, or 3 for the transposed keys.
                        let copy = |t: &Tensor, axis: usize| -> Result<Tensor> {
                            let mut dims = t.dims().to_vec();
                            if dims[0] != 1 && n != 1 {
                                return Err(Error::InvalidArgument(
                                    "only a cache of one sequence can be repeated".into(),
                                ));
                            }
                            dims[0] *= n;
                            dims[axis] = cap;
                            let buf = Tensor::zeros(dims, t.dtype(), t.device())?;
                            if self.len > 0 {
                                let src = t
                                    .narrow(axis, 0, self.len)?
                                    .repeat((n, 1, 1, 1))?
                                    .contiguous()?;
                                buf.slice_set(&src, axis, 0)?;
                            }
                            Ok(buf)
                        };
                        Ok(LayerCache {
                            k: match &c.k {
                                Keys::Rows(k) => Keys::Rows(copy(k, 2)?),
                                Keys::Transposed(kt) => Keys::Transposed(copy(kt, 3)?),
                            },
                            v: copy(&c.v, 2)?,
                        })
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: self.len,
            half: self.half,
        })
    }

    /// Keeps only the sequences at `rows` (in that order), e.g. when some of a
    /// group have finished.
    pub fn select(&mut self, rows: &[u32]) -> Result<()> {
        for c in self.layers.iter_mut().flatten() {
            let idx = Tensor::new(rows, c.v.device())?;
            c.v = c.v.index_select(&idx, 0)?;
            c.k = match &c.k {
                Keys::Rows(k) => Keys::Rows(k.index_select(&idx, 0)?),
                Keys::Transposed(kt) => Keys::Transposed(kt.index_select(&idx, 0)?),
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn bits(x: &Tensor) -> Vec<u32> {
        x.to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    /// The cache's keys (read through the transposed ones) and values
    /// against what was appended, rounded as the cache stores them.
    fn check(c: &KvCache, k: &Tensor, v: &Tensor) {
        let empty = Tensor::zeros((c.batch(), 2, 0, 8), DType::F32, &Device::Cpu).unwrap();
        let (ck, cv) = c.clone().append(0, &empty, &empty).unwrap();
        let dtype = if c.half { DType::F16 } else { DType::F32 };
        assert_eq!(ck.dtype(), dtype);
        assert_eq!(bits(&ck), bits(&k.to_dtype(dtype).unwrap()));
        assert_eq!(bits(&cv), bits(&v.to_dtype(dtype).unwrap()));
        let kt = c.keys_transposed(0, 0).unwrap().unwrap();
        assert_eq!(bits(&kt.transpose(2, 3).unwrap()), bits(&ck));
    }

    #[test]
    fn the_transposed_keys_follow_appends_growth_forks_and_selections() {
        let d = Device::Cpu;
        for cache in [KvCache::new(1), KvCache::new(1).half()] {
            let mut c = cache;
            let (mut ks, mut vs) = (Vec::new(), Vec::new());
            // 70 positions in three appends: the buffers grow from 64 to 128.
            for t in [30, 39, 1] {
                let k = Tensor::randn(0f32, 1.0, (1, 2, t, 8), &d).unwrap();
                let v = Tensor::randn(0f32, 1.0, (1, 2, t, 8), &d).unwrap();
                c.append(0, &k, &v).unwrap();
                c.advance(t);
                ks.push(k);
                vs.push(v);
                check(
                    &c,
                    &Tensor::cat(&ks, 2).unwrap(),
                    &Tensor::cat(&vs, 2).unwrap(),
                );
            }
            let (k, v) = (Tensor::cat(&ks, 2).unwrap(), Tensor::cat(&vs, 2).unwrap());
            // A group of three continues the one sequence, then keeps two of them.
            let mut g = c.fork(3, 5).unwrap();
            let (k, v) = (
                k.repeat((3, 1, 1, 1)).unwrap(),
                v.repeat((3, 1, 1, 1)).unwrap(),
            );
            check(&g, &k, &v);
            let k1 = Tensor::randn(0f32, 1.0, (3, 2, 1, 8), &d).unwrap();
            g.append(0, &k1, &k1).unwrap();
            g.advance(1);
            let k = Tensor::cat(&[&k, &k1], 2).unwrap();
            let v = Tensor::cat(&[&v, &k1], 2).unwrap();
            check(&g, &k, &v);
            g.select(&[2, 0]).unwrap();
            let idx = Tensor::new(&[2u32, 0], &d).unwrap();
            check(
                &g,
                &k.index_select(&idx, 0).unwrap(),
                &v.index_select(&idx, 0).unwrap(),
            );
            assert!(g.bytes() > 0);
        }
    }
}
