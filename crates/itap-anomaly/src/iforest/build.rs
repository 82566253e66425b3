//! Growing one isolation tree (Liu, Ting & Zhou 2008, algorithm 2).

use ndarray::ArrayView2;
use rand::seq::index;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Euler–Mascheroni constant, for the harmonic-number approximation.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// c(n): the average path length of an unsuccessful search in a binary search tree
/// of `n` keys, 2·H(n−1) − 2(n−1)/n with H(i) ≈ ln i + γ; c(1) = 0 and c(2) = 1
/// (the exact values, as scikit-learn uses).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let m = (n - 1) as f64;
            2.0 * (m.ln() + EULER_GAMMA) - 2.0 * m / n as f64
        }
    }
}

/// The height limit ⌈log₂ ψ⌉ for a subsample of ψ rows.
pub(crate) fn height_limit(psi: usize) -> u32 {
    psi.max(2).next_power_of_two().trailing_zeros()
}

/// One tree in its serialized form: parallel arrays, one entry per node, the root
/// first, the two children of a node next to each other (left, then right).
///
/// - `left`: index of the left child (the right one is `left + 1`); 0 at a leaf
///   (the root is nobody's child).
/// - `feature`: the column an internal node splits on (0 at a leaf).
/// - `value`: the split threshold at an internal node (a row goes left when its
///   value is ≤ the threshold); at a leaf, the path length it stands for,
///   depth + c(size).
/// - `size`: the training rows of the subsample that reached the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TreeRepr {
    pub(crate) left: Vec<u32>,
    pub(crate) feature: Vec<u32>,
    pub(crate) value: Vec<f64>,
    pub(crate) size: Vec<u32>,
}

impl TreeRepr {
    fn with_capacity(n: usize) -> Self {
        TreeRepr {
            left: Vec::with_capacity(n),
            feature: Vec::with_capacity(n),
            value: Vec::with_capacity(n),
            size: Vec::with_capacity(n),
        }
    }

    fn push(&mut self) -> usize {
        self.left.push(0);
        self.feature.push(0);
        self.value.push(0.0);
        self.size.push(0);
        self.left.len() - 1
    }

    pub(crate) fn len(&self) -> usize {
        self.left.len()
    }
}

/// What a tree is grown from.
pub(crate) struct GrowSpec<'a> {
    /// The full matrix (finite in the listed rows).
    pub(crate) x: ArrayView2<'a, f64>,
    /// The training rows of `x`.
    pub(crate) rows: &'a [usize],
    /// Subsample size ψ (≤ `rows.len()`).
    pub(crate) psi: usize,
    /// Columns each tree may split on.
    pub(crate) features: usize,
    /// Seed of the forest.
    pub(crate) seed: u64,
}

/// Grows tree number `tree` from its own ChaCha8 stream (seed, tree): the same tree
/// whichever thread grows it, and in whatever order.
pub(crate) fn grow_tree(spec: &GrowSpec<'_>, tree: usize) -> TreeRepr {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    rng.set_stream(tree as u64);
    let p = spec.x.ncols();
    let psi = spec.psi;
    let sample = index::sample(&mut rng, spec.rows.len(), psi);
    let columns: Vec<usize> = if spec.features < p {
        let mut c = index::sample(&mut rng, p, spec.features).into_vec();
        c.sort_unstable();
        c
    } else {
        (0..p).collect()
    };
    let k = columns.len();

    // the subsample, column-major: data[j * psi + i] is column columns[j] of row i
    let mut data = vec![0.0; k * psi];
    for (i, s) in sample.iter().enumerate() {
        let row = spec.x.row(spec.rows[s]);
        for (j, &c) in columns.iter().enumerate() {
            data[j * psi + i] = row[c];
        }
    }

    let limit = height_limit(psi);
    let mut order: Vec<usize> = (0..k).collect();
    let mut idx: Vec<u32> = (0..psi as u32).collect();
    let mut tree = TreeRepr::with_capacity(2 * psi);
    tree.push();
    // (node, start, end, depth); the left child is taken first
    let mut stack = vec![(0usize, 0usize, psi, 0u32)];
    while let Some((node, lo, hi, depth)) = stack.pop() {
        let n = hi - lo;
        tree.size[node] = n as u32;
        let split = if depth >= limit || n <= 1 {
            None
        } else {
            choose_split(&mut rng, &mut order, &data, psi, &idx[lo..hi])
        };
        let Some((j, threshold)) = split else {
            tree.value[node] = f64::from(depth) + average_path_length(n);
            continue;
        };
        let col = &data[j * psi..(j + 1) * psi];
        let mid = lo + partition(&mut idx[lo..hi], |i| col[i as usize] <= threshold);
        let left = tree.push();
        tree.push();
        tree.left[node] = left as u32;
        tree.feature[node] = columns[j] as u32;
        tree.value[node] = threshold;
        stack.push((left + 1, mid, hi, depth + 1));
        stack.push((left, lo, mid, depth + 1));
    }
    tree
}

/// Picks a column that is not constant on the node's rows, uniformly among those
/// (a random order of the columns, the first non-constant one), and a threshold
/// uniform in [min, max). `None` when every column is constant: the node is a leaf.
fn choose_split(
    rng: &mut ChaCha8Rng,
    order: &mut [usize],
    data: &[f64],
    psi: usize,
    idx: &[u32],
) -> Option<(usize, f64)> {
    let k = order.len();
    for a in 0..k {
        let b = rng.random_range(a..k);
        order.swap(a, b);
        let j = order[a];
        let col = &data[j * psi..(j + 1) * psi];
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &i in idx {
            let v = col[i as usize];
            min = min.min(v);
            max = max.max(v);
        }
        if max > min {
            let u: f64 = rng.random();
            // a convex combination cannot overflow for finite min and max
            let mut t = min * (1.0 - u) + max * u;
            if !(t >= min && t < max) {
                t = min;
            }
            return Some((j, t));
        }
    }
    None
}

/// Moves the entries for which `goes_left` holds to the front; returns how many.
fn partition(idx: &mut [u32], goes_left: impl Fn(u32) -> bool) -> usize {
    let mut mid = 0;
    for i in 0..idx.len() {
        if goes_left(idx[i]) {
            idx.swap(mid, i);
            mid += 1;
        }
    }
    mid
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn path_length_normaliser() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // scikit-learn's _average_path_length at 3, 256 and 1000
        for (n, sk) in [
            (3, 1.207_392_357_589_623),
            (256, 10.244_770_920_119_917),
            (1000, 12.969_940_887_100_174),
        ] {
            assert!((average_path_length(n) - sk).abs() < 1e-12, "c({n})");
        }
        assert_eq!(height_limit(256), 8);
        assert_eq!(height_limit(257), 9);
        assert_eq!(height_limit(2), 1);
    }

    fn toy(n: usize, p: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, p), |(i, j)| ((i * 7919 + j * 104_729) % 1000) as f64)
    }

    #[test]
    fn a_tree_is_well_formed() {
        let x = toy(500, 3);
        let rows: Vec<usize> = (0..500).collect();
        let spec = GrowSpec {
            x: x.view(),
            rows: &rows,
            psi: 256,
            features: 3,
            seed: 1,
        };
        let t = grow_tree(&spec, 0);
        assert_eq!(t.size[0], 256);
        let mut leaves = 0;
        for i in 0..t.len() {
            let l = t.left[i] as usize;
            if l == 0 {
                leaves += t.size[i];
                assert!(t.value[i] >= 0.0);
            } else {
                assert!(l > i && l + 1 < t.len());
                assert_eq!(t.size[l] + t.size[l + 1], t.size[i]);
                assert!(t.size[l] > 0 && t.size[l + 1] > 0);
            }
        }
        assert_eq!(leaves, 256);
        // same seed and tree number: the same tree; another number: another tree
        assert_eq!(grow_tree(&spec, 0), t);
        assert_ne!(grow_tree(&spec, 1), t);
    }

    #[test]
    fn constant_data_gives_a_single_leaf() {
        let x = Array2::from_elem((50, 2), 3.0);
        let rows: Vec<usize> = (0..50).collect();
        let spec = GrowSpec {
            x: x.view(),
            rows: &rows,
            psi: 32,
            features: 2,
            seed: 1,
        };
        let t = grow_tree(&spec, 0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.value[0], average_path_length(32));
    }
}
