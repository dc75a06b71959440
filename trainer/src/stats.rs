//! Intervals that say whether a score or a change is more than noise.
//!
//! Evaluation scores a few dozen tasks, K samples each. A task's samples are
//! not independent draws (a task the model cannot do fails all K times), so the
//! unit of resampling is the task: the bootstrap draws tasks with replacement,
//! each with all its samples, recomputes the statistic, and takes the 2.5th and
//! 97.5th percentiles of [`RESAMPLES`] recomputations (the percentile interval;
//! Efron and Tibshirani, *An Introduction to the Bootstrap*, ch. 13).
//!
//! Resampling is stratified: the units come in groups (the skills, for the mean
//! over skills; the YES and NO tasks, for review's balanced accuracy) and each
//! group is resampled within itself, so every resample keeps its shape.
//!
//! The generator is SplitMix64 with a fixed seed, written out here so that a
//! report's intervals are the same on every machine and with every version of
//! the `rand` crate.

/// Recomputations per interval.
pub const RESAMPLES: usize = 2000;

/// The seed of every interval: the same data gives the same interval.
pub const SEED: u64 = 0x5eed_b007_5724_0028;

/// SplitMix64 (Steele, Lea and Flood, 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-50
    /// for any task count).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

/// The 95% percentile interval of `stat` over [`RESAMPLES`] stratified
/// resamples of `groups` (see the module docs). `stat` sees the resampled
/// groups in the same order and may decline a resample (`None`), which is left
/// out; `None` when it declined every one or there is nothing to resample.
pub fn bootstrap<T: Copy>(
    groups: &[Vec<T>],
    stat: impl Fn(&[Vec<T>]) -> Option<f64>,
) -> Option<[f64; 2]> {
    if groups.iter().all(Vec::is_empty) {
        return None;
    }
    let mut rng = SplitMix64(SEED);
    let mut resample: Vec<Vec<T>> = groups.iter().map(|g| Vec::with_capacity(g.len())).collect();
    let mut values = Vec::with_capacity(RESAMPLES);
    for _ in 0..RESAMPLES {
        for (group, drawn) in groups.iter().zip(&mut resample) {
            drawn.clear();
            drawn.extend((0..group.len()).map(|_| group[rng.below(group.len())]));
        }
        if let Some(v) = stat(&resample).filter(|v| v.is_finite()) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    // Rounded past any meaningful digit, so that reports show 0.43375 rather
    // than the interpolation's 0.4337499999999977.
    let round = |x: f64| (x * 1e9).round() / 1e9;
    Some([
        round(quantile(&values, 0.025)),
        round(quantile(&values, 0.975)),
    ])
}

/// The `q` quantile of sorted `values`, interpolating between neighbours
/// (Hyndman and Fan's type 7, numpy's default).
fn quantile(values: &[f64], q: f64) -> f64 {
    let at = q * (values.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (at - lo as f64)
}

/// The mean of `values`; `None` when there are none.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A task's samples: the sum of their scores and how many there are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    pub sum: f64,
    pub n: f64,
}

/// The pooled mean of tallies (the sum of the sums over the sum of the
/// counts): a sample-weighted mean, as Avg@K is; `None` with no samples.
pub fn pooled(tallies: &[Tally]) -> Option<f64> {
    let (sum, n) = tallies
        .iter()
        .fold((0.0, 0.0), |(s, n), t| (s + t.sum, n + t.n));
    (n > 0.0).then(|| sum / n)
}

/// The mean over groups of each group's statistic; `None` where a group has
/// none or there are no groups.
pub fn mean_over<T>(groups: &[Vec<T>], per_group: impl Fn(&[T]) -> Option<f64>) -> Option<f64> {
    let each: Option<Vec<f64>> = groups.iter().map(|g| per_group(g)).collect();
    mean(&each?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tallies(ones: usize, zeros: usize, k: f64) -> Vec<Tally> {
        let one = Tally { sum: k, n: k };
        let zero = Tally { sum: 0.0, n: k };
        std::iter::repeat_n(one, ones)
            .chain(std::iter::repeat_n(zero, zeros))
            .collect()
    }

    // The interval against the binomial one, and a task's samples kept
    // together, are tested on reports in `eval.rs`.

    #[test]
    fn no_spread_no_width_and_nothing_to_resample_no_interval() {
        assert_eq!(
            bootstrap(&[tallies(5, 0, 2.0)], |g| pooled(&g[0])),
            Some([1.0, 1.0])
        );
        assert_eq!(bootstrap::<Tally>(&[vec![]], |g| pooled(&g[0])), None);
        // A statistic that declines every resample has no interval either.
        assert_eq!(bootstrap(&[tallies(1, 1, 1.0)], |_| None), None);
        // The same data gives the same interval.
        let once = bootstrap(&[tallies(3, 4, 1.0)], |g| pooled(&g[0]));
        assert_eq!(once, bootstrap(&[tallies(3, 4, 1.0)], |g| pooled(&g[0])));
        assert!(once.is_some_and(|[lo, hi]| lo < 3.0 / 7.0 && 3.0 / 7.0 < hi));
    }

    #[test]
    fn groups_are_resampled_within_themselves() {
        // Two groups of constants: every resample keeps one of each, so the
        // mean over groups never moves.
        let groups = vec![vec![0.0; 3], vec![1.0; 7]];
        let stat = |g: &[Vec<f64>]| mean_over(g, mean);
        assert_eq!(stat(&groups), Some(0.5));
        assert_eq!(bootstrap(&groups, stat), Some([0.5, 0.5]));
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.5), 2.0);
        assert_eq!(quantile(&v, 0.125), 0.5);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert_eq!(
            pooled(&[Tally { sum: 1.0, n: 4.0 }, Tally { sum: 2.0, n: 2.0 }]),
            Some(0.5)
        );
    }
}
