//! Keys and values of past positions, per layer, in buffers that grow by doubling
//! so that a decode step writes one position in place instead of copying the cache.
//!
//! On the CPU in f32 each layer also keeps its keys transposed, head dimension by
//! position, the layout the fused attention reads a query's scores from
//! ([`crate::ops::cached_attention`]): each position is transposed once, when it
//! is appended, instead of the whole cache at every step.

use candle_core::Tensor;

use crate::error::{Error, Result};

#[derive(Clone)]
struct LayerCache {
    /// (batch, kv_heads, capacity, head_dim)
    k: Tensor,
    v: Tensor,
    /// The keys transposed, (batch, kv_heads, head_dim, capacity), where the
    /// fused attention runs (see the module docs).
    kt: Option<Tensor>,
}

/// The KV cache of one batch of sequences that all have the same length.
#[derive(Clone)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
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
            .map_or(0, |l| l.k.dims()[0])
    }

    /// Appends `t` positions to layer `layer` and returns the keys and values of all
    /// positions so far. `advance` must follow once every layer has appended.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let needed = self.len + t;
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::InvalidArgument(format!("no layer {layer} in the cache")))?;
        let grow = match slot {
            Some(c) => c.k.dim(2)? < needed,
            None => true,
        };
        if grow {
            let cap = needed.next_power_of_two().max(64);
            let (b, h, _, d) = k.dims4()?;
            let nk = Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?;
            let nkt = crate::ops::fused(k)
                .then(|| Tensor::zeros((b, h, d, cap), k.dtype(), k.device()))
                .transpose()?;
            if let Some(old) = slot.as_ref() {
                if self.len > 0 {
                    nk.slice_set(&old.k.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    nv.slice_set(&old.v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    if let (Some(nkt), Some(kt)) = (&nkt, &old.kt) {
                        nkt.slice_set(&kt.narrow(3, 0, self.len)?.contiguous()?, 3, 0)?;
                    }
                }
            }
            *slot = Some(LayerCache {
                k: nk,
                v: nv,
                kt: nkt,
            });
        }
        let c = slot.as_ref().expect("allocated above");
        c.k.slice_set(&k.contiguous()?, 2, self.len)?;
        c.v.slice_set(&v.contiguous()?, 2, self.len)?;
        if let Some(kt) = &c.kt {
            kt.slice_set(&k.transpose(2, 3)?.contiguous()?, 3, self.len)?;
        }
        Ok((c.k.narrow(2, 0, needed)?, c.v.narrow(2, 0, needed)?))
    }

    /// Layer `layer`'s keys transposed, (batch, kv_heads, head_dim, positions),
    /// through the positions appended so far and the `t` of the step under way
    /// (`append` first), where the cache keeps them (see the module docs).
    pub(crate) fn keys_transposed(&self, layer: usize, t: usize) -> Result<Option<Tensor>> {
        match self.layers.get(layer).and_then(|l| l.as_ref()?.kt.as_ref()) {
            Some(kt) => Ok(Some(kt.narrow(3, 0, self.len + t)?)),
            None => Ok(None),
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
                let kt = c.kt.as_ref().map_or(0, Tensor::elem_count);
                (c.k.elem_count() + c.v.elem_count() + kt) * c.k.dtype().size_in_bytes()
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
                            k: copy(&c.k, 2)?,
                            v: copy(&c.v, 2)?,
                            kt: c.kt.as_ref().map(|kt| copy(kt, 3)).transpose()?,
                        })
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            layers,
            len: self.len,
        })
    }

    /// Keeps only the sequences at `rows` (in that order), e.g. when some of a
    /// group have finished.
    pub fn select(&mut self, rows: &[u32]) -> Result<()> {
        for c in self.layers.iter_mut().flatten() {
            let device = c.k.device().clone();
            let idx = Tensor::new(rows, &device)?;
            c.k = c.k.index_select(&idx, 0)?;
            c.v = c.v.index_select(&idx, 0)?;
            c.kt =
                c.kt.as_ref()
                    .map(|kt| kt.index_select(&idx, 0))
                    .transpose()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn bits(x: &Tensor) -> Vec<u32> {
        x.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect()
    }

    /// The cache's keys transposed back, against its keys.
    fn check(c: &KvCache, layer: usize) {
        let (k, _) = c.clone().append(layer, &empty(c), &empty(c)).unwrap();
        let kt = c.keys_transposed(layer, 0).unwrap().unwrap();
        assert_eq!(bits(&kt.transpose(2, 3).unwrap()), bits(&k));
    }

    fn empty(c: &KvCache) -> Tensor {
        Tensor::zeros((c.batch(), 2, 0, 8), candle_core::DType::F32, &Device::Cpu).unwrap()
    }

    #[test]
    fn the_transposed_keys_follow_appends_growth_forks_and_selections() {
        let d = Device::Cpu;
        let mut c = KvCache::new(1);
        // 70 positions in three appends: the buffers grow from 64 to 128.
        for t in [30, 39, 1] {
            let k = Tensor::randn(0f32, 1.0, (1, 2, t, 8), &d).unwrap();
            let v = Tensor::randn(0f32, 1.0, (1, 2, t, 8), &d).unwrap();
            c.append(0, &k, &v).unwrap();
            c.advance(t);
            check(&c, 0);
        }
        // A group of three continues the one sequence, then keeps two of them.
        let mut g = c.fork(3, 5).unwrap();
        check(&g, 0);
        let k = Tensor::randn(0f32, 1.0, (3, 2, 1, 8), &d).unwrap();
        g.append(0, &k, &k).unwrap();
        g.advance(1);
        check(&g, 0);
        g.select(&[2, 0]).unwrap();
        check(&g, 0);
        assert!(g.bytes() > 0);
    }
}
