//! The forest laid out flat for scoring, and the scoring loops.

use ndarray::ArrayView2;
use rayon::prelude::*;

use super::build::TreeRepr;
use crate::error::{Error, Result};
use crate::matrix::copy_rows;

/// Rows traversed in lock step: independent walks the CPU can overlap.
const GROUP: usize = 16;
/// Rows per parallel task (a multiple of `GROUP`): the task copies them into one
/// row-major buffer and walks every tree over them while the tree sits in L1.
const BLOCK: usize = 128;
/// Deepest tree a model may hold (the height limit of the largest ψ is 24).
const MAX_DEPTH: u32 = 64;

/// One node, 16 bytes. A leaf points to itself with an infinite threshold, so a walk
/// of a fixed number of steps (the tree's depth) ends on the leaf whatever its depth.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    threshold: f64,
    feature: u32,
    left: u32,
}

/// Every tree of a forest in one array of nodes, with the per-node path length of
/// the leaves and the per-node training sizes (for the NaN rule) beside it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    leaf: Vec<f64>,
    size: Vec<u32>,
    roots: Vec<u32>,
    depth: Vec<u32>,
}

impl Forest {
    /// Lays out trees after checking that they are well-formed trees over
    /// `n_features` columns: children after their parent and in range, each node the
    /// child of at most one parent, sizes that add up, finite values, depth ≤ 64.
    pub(crate) fn from_trees(trees: &[TreeRepr], n_features: usize) -> Result<Forest> {
        let total: usize = trees.iter().map(TreeRepr::len).sum();
        if u32::try_from(total).is_err() {
            return Err(Error::model(format!(
                "{total} nodes in all; at most {} fit the layout",
                u32::MAX
            )));
        }
        let mut f = Forest {
            nodes: Vec::with_capacity(total),
            leaf: Vec::with_capacity(total),
            size: Vec::with_capacity(total),
            roots: Vec::with_capacity(trees.len()),
            depth: Vec::with_capacity(trees.len()),
        };
        for (t, tree) in trees.iter().enumerate() {
            let depth =
                check_tree(tree, n_features).map_err(|r| Error::model(format!("tree {t}: {r}")))?;
            let base = f.nodes.len() as u32;
            f.roots.push(base);
            f.depth.push(depth);
            for i in 0..tree.len() {
                let g = base + i as u32;
                if tree.left[i] == 0 {
                    f.nodes.push(Node {
                        threshold: f64::INFINITY,
                        feature: 0,
                        left: g,
                    });
                    f.leaf.push(tree.value[i]);
                } else {
                    f.nodes.push(Node {
                        threshold: tree.value[i],
                        feature: tree.feature[i],
                        left: base + tree.left[i],
                    });
                    f.leaf.push(0.0);
                }
                f.size.push(tree.size[i]);
            }
        }
        Ok(f)
    }

    /// Number of trees.
    pub(crate) fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Total nodes.
    pub(crate) fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// For each row of `x`, the sum over the trees (in tree order) of its path
    /// length; `out` has one entry per row and `x` the forest's column count.
    /// Parallel over blocks of rows; each row's sum is the same on any thread count.
    pub(crate) fn path_sums(&self, x: ArrayView2<'_, f64>, out: &mut [f64]) {
        let p = x.ncols();
        out.par_chunks_mut(BLOCK).enumerate().for_each_init(
            Vec::new,
            |buf: &mut Vec<f64>, (b, chunk)| {
                let n = chunk.len();
                buf.clear();
                buf.resize(n.div_ceil(GROUP) * GROUP * p, 0.0);
                copy_rows(x, b * BLOCK, n, buf);
                self.block_sums(buf, p, chunk);
                for (r, sum) in chunk.iter_mut().enumerate() {
                    let row = &buf[r * p..(r + 1) * p];
                    if row.iter().any(|v| v.is_nan()) {
                        *sum = self.nan_row_sum(row);
                    }
                }
            },
        );
    }

    /// The fast walk: every tree over every group of `GROUP` rows of the block.
    fn block_sums(&self, buf: &[f64], p: usize, out: &mut [f64]) {
        out.fill(0.0);
        for (&root, &depth) in self.roots.iter().zip(&self.depth) {
            for (g, rows) in buf.chunks_exact(GROUP * p).enumerate() {
                let mut idx = [root; GROUP];
                for _ in 0..depth {
                    for (r, i) in idx.iter_mut().enumerate() {
                        let node = self.nodes[*i as usize];
                        let v = rows[r * p + node.feature as usize];
                        *i = node.left + u32::from(v > node.threshold);
                    }
                }
                let base = g * GROUP;
                let end = (base + GROUP).min(out.len());
                for (o, &i) in out[base..end].iter_mut().zip(&idx) {
                    *o += self.leaf[i as usize];
                }
            }
        }
    }

    /// The walk of a row with NaN: at a node that splits on a NaN value, both
    /// branches are followed and their path lengths averaged with the weights of
    /// the training rows that went each way.
    fn nan_row_sum(&self, row: &[f64]) -> f64 {
        self.roots
            .iter()
            .map(|&root| self.expected_path(root as usize, row))
            .sum()
    }

    fn expected_path(&self, i: usize, row: &[f64]) -> f64 {
        let node = self.nodes[i];
        let l = node.left as usize;
        if l == i {
            return self.leaf[i];
        }
        let v = row[node.feature as usize];
        if v.is_nan() {
            let (nl, nr) = (f64::from(self.size[l]), f64::from(self.size[l + 1]));
            (nl * self.expected_path(l, row) + nr * self.expected_path(l + 1, row)) / (nl + nr)
        } else if v > node.threshold {
            self.expected_path(l + 1, row)
        } else {
            self.expected_path(l, row)
        }
    }
}

/// Checks one tree; returns its depth.
fn check_tree(t: &TreeRepr, n_features: usize) -> std::result::Result<u32, String> {
    let n = t.len();
    if n == 0 {
        return Err("no nodes".into());
    }
    if t.feature.len() != n || t.value.len() != n || t.size.len() != n {
        return Err("the node arrays differ in length".into());
    }
    let mut has_parent = vec![false; n];
    for i in 0..n {
        if t.size[i] == 0 {
            return Err(format!("node {i} has size 0"));
        }
        let l = t.left[i] as usize;
        if !t.value[i].is_finite() {
            return Err(format!("node {i} has value {}", t.value[i]));
        }
        if l == 0 {
            if t.value[i] < 0.0 {
                return Err(format!("leaf {i} has a negative path length"));
            }
            continue;
        }
        if l <= i || l + 1 >= n {
            return Err(format!(
                "node {i} has children {l}, {} out of order or range",
                l + 1
            ));
        }
        if has_parent[l] {
            return Err(format!("node {l} has two parents"));
        }
        has_parent[l] = true;
        if t.feature[i] as usize >= n_features {
            return Err(format!(
                "node {i} splits on column {} of {n_features}",
                t.feature[i]
            ));
        }
        if u64::from(t.size[l]) + u64::from(t.size[l + 1]) != u64::from(t.size[i]) {
            return Err(format!(
                "the children of node {i} do not add up to its size"
            ));
        }
    }
    // depth: each node has at most one parent and children come later, so this
    // walk visits each reachable node once
    let mut depth = 0;
    let mut stack = vec![(0usize, 0u32)];
    while let Some((i, d)) = stack.pop() {
        if d > MAX_DEPTH {
            return Err(format!("deeper than {MAX_DEPTH}"));
        }
        depth = depth.max(d);
        let l = t.left[i] as usize;
        if l != 0 {
            stack.push((l, d + 1));
            stack.push((l + 1, d + 1));
        }
    }
    Ok(depth)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stump() -> TreeRepr {
        // root splits column 1 at 0.5; leaves at depth 1
        TreeRepr {
            left: vec![1, 0, 0],
            feature: vec![1, 0, 0],
            value: vec![0.5, 1.0, 3.0],
            size: vec![4, 1, 3],
        }
    }

    #[test]
    fn walks_and_nan_rule() {
        let f = Forest::from_trees(&[stump()], 2).unwrap();
        let x = ndarray::array![
            [9.0, 0.1],
            [9.0, 0.5],
            [9.0, 0.7],
            [f64::NAN, 0.7],
            [0.0, f64::NAN]
        ];
        let mut out = vec![0.0; 5];
        f.path_sums(x.view(), &mut out);
        // NaN in an unused column changes nothing; NaN in the split column averages
        // the leaves with weights 1 and 3
        assert_eq!(out, vec![1.0, 1.0, 3.0, 3.0, (1.0 + 3.0 * 3.0) / 4.0]);
    }

    #[test]
    fn malformed_trees_are_refused() {
        let mut t = stump();
        t.left[0] = 2;
        assert!(Forest::from_trees(&[t], 2).is_err());
        let mut t = stump();
        t.feature[0] = 2;
        assert!(
            Forest::from_trees(&[t], 2)
                .unwrap_err()
                .to_string()
                .contains("column 2")
        );
        let mut t = stump();
        t.size[2] = 2;
        assert!(Forest::from_trees(&[t], 2).is_err());
        let mut t = stump();
        t.value[1] = f64::NAN;
        assert!(Forest::from_trees(&[t], 2).is_err());
        let mut t = stump();
        t.size.pop();
        assert!(Forest::from_trees(&[t], 2).is_err());
    }
}
