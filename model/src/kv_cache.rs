//! Keys and values of past positions, per layer, in buffers that grow by doubling
//! so that a decode step writes one position in place instead of copying the cache.

use candle_core::Tensor;

use crate::error::{Error, Result};

#[derive(Clone)]
struct LayerCache {
    /// (batch, kv_heads, capacity, head_dim)
    k: Tensor,
    v: Tensor,
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
            if let Some(old) = slot.as_ref() {
                if self.len > 0 {
                    nk.slice_set(&old.k.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    nv.slice_set(&old.v.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
            }
            *slot = Some(LayerCache { k: nk, v: nv });
        }
        let c = slot.as_ref().expect("allocated above");
        c.k.slice_set(&k.contiguous()?, 2, self.len)?;
        c.v.slice_set(&v.contiguous()?, 2, self.len)?;
        Ok((c.k.narrow(2, 0, needed)?, c.v.narrow(2, 0, needed)?))
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Bytes held by the buffers (allocated capacity, not only the used positions).
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|c| (c.k.elem_count() + c.v.elem_count()) * c.k.dtype().size_in_bytes())
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
                        let copy = |t: &Tensor| -> Result<Tensor> {
                            let (b, h, _, d) = t.dims4()?;
                            if b != 1 && n != 1 {
                                return Err(Error::InvalidArgument(
                                    "only a cache of one sequence can be repeated".into(),
                                ));
                            }
                            let buf = Tensor::zeros((b * n, h, cap, d), t.dtype(), t.device())?;
                            if self.len > 0 {
                                let src = t
                                    .narrow(2, 0, self.len)?
                                    .repeat((n, 1, 1, 1))?
                                    .contiguous()?;
                                buf.slice_set(&src, 2, 0)?;
                            }
                            Ok(buf)
                        };
                        Ok(LayerCache {
                            k: copy(&c.k)?,
                            v: copy(&c.v)?,
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
        }
        Ok(())
    }

    /// Bytes held by the buffers.
    pub fn size_in_bytes(&self) -> usize {
        self.layers
            .iter()
            .flatten()
            .map(|c| 2 * c.k.elem_count() * c.k.dtype().size_in_bytes())
            .sum()
    }
}
