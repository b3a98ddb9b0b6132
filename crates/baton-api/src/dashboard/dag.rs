//! A pipeline run's DAG laid out for an SVG picture: each job in the column of its
//! longest chain of needs, in plan order within a column, with an edge from each need.
//! Pure: the page draws what this returns.

use std::collections::BTreeMap;

use serde::Serialize;

/// A node's size and the gaps between them, in SVG units.
const W: u32 = 168;
const H: u32 = 40;
const GAP_X: u32 = 56;
const GAP_Y: u32 = 14;
const PAD: u32 = 8;
/// Characters of a job's name shown in its box (the whole name is its tooltip).
const LABEL: usize = 20;

/// One job as the plan has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: String,
    pub needs: Vec<String>,
}

/// A job's box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: String,
    pub label: String,
    pub status: String,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    /// The column (0: needs nothing).
    pub level: usize,
}

/// An edge from a need to the job needing it, as an SVG path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub d: String,
}

/// The laid-out DAG.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dag {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub width: u32,
    pub height: u32,
}

/// Lays out `jobs` (in plan order: needs before the jobs that need them), each coloured
/// by `status` (`pending` when it has none yet). Needs that name no job are ignored.
pub fn layout(jobs: &[Job], status: &BTreeMap<String, String>) -> Dag {
    let index: BTreeMap<&str, usize> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (j.id.as_str(), i))
        .collect();
    // Longest chain of needs; the plan lists needs first, so one pass suffices, and a
    // need listed later (which a valid plan never has) just counts as level 0.
    let mut level = vec![0usize; jobs.len()];
    for (i, j) in jobs.iter().enumerate() {
        level[i] = j
            .needs
            .iter()
            .filter_map(|n| index.get(n.as_str()))
            .filter(|&&k| k < i)
            .map(|&k| level[k] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut rows = vec![0u32; jobs.len() + 1];
    let mut nodes = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        let l = level[i];
        let row = rows[l];
        rows[l] += 1;
        let label = if j.id.chars().count() > LABEL {
            format!("{}…", j.id.chars().take(LABEL - 1).collect::<String>())
        } else {
            j.id.clone()
        };
        nodes.push(Node {
            id: j.id.clone(),
            label,
            status: status
                .get(&j.id)
                .cloned()
                .unwrap_or_else(|| "pending".into()),
            x: PAD + l as u32 * (W + GAP_X),
            y: PAD + row * (H + GAP_Y),
            w: W,
            h: H,
            level: l,
        });
    }
    let mut edges = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        for n in &j.needs {
            let Some(&k) = index.get(n.as_str()) else {
                continue;
            };
            let (a, b) = (&nodes[k], &nodes[i]);
            let (x1, y1) = (a.x + a.w, a.y + a.h / 2);
            let (x2, y2) = (b.x, b.y + b.h / 2);
            let mid = (x1 + x2) / 2;
            edges.push(Edge {
                from: a.id.clone(),
                to: b.id.clone(),
                d: format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"),
            });
        }
    }
    let columns = level.iter().max().map_or(0, |m| m + 1) as u32;
    let tallest = rows.iter().copied().max().unwrap_or(0);
    Dag {
        width: (2 * PAD + columns * W + columns.saturating_sub(1) * GAP_X).max(W),
        height: (2 * PAD + tallest * H + tallest.saturating_sub(1) * GAP_Y).max(H),
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, needs: &[&str]) -> Job {
        Job {
            id: id.into(),
            needs: needs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn jobs_sit_in_the_column_of_their_longest_chain() {
        let jobs = [
            job("build", &[]),
            job("lint", &[]),
            job("test[shard=a]", &["build"]),
            job("test[shard=b]", &["build"]),
            job("deploy", &["test[shard=a]", "test[shard=b]", "lint"]),
            job("orphan", &["nothing"]),
        ];
        let status = [("build".to_string(), "success".to_string())].into();
        let dag = layout(&jobs, &status);
        let at: Vec<(&str, usize, u32)> = dag
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.level, n.y))
            .collect();
        assert_eq!(
            at,
            [
                ("build", 0, 8),
                ("lint", 0, 62),
                ("test[shard=a]", 1, 8),
                ("test[shard=b]", 1, 62),
                ("deploy", 2, 8),
                ("orphan", 0, 116),
            ]
        );
        assert_eq!(dag.nodes[0].status, "success");
        assert_eq!(dag.nodes[1].status, "pending");
        assert_eq!(dag.edges.len(), 5, "the unknown need draws nothing");
        assert_eq!(dag.edges[0].d, "M176,28 C204,28 204,28 232,28");
        assert_eq!(
            (dag.width, dag.height),
            (16 + 3 * 168 + 2 * 56, 16 + 3 * 40 + 2 * 14)
        );
    }

    #[test]
    fn long_names_are_cut_and_an_empty_plan_still_has_a_size() {
        let dag = layout(&[job(&"x".repeat(30), &[])], &BTreeMap::new());
        assert_eq!(dag.nodes[0].label.chars().count(), 20);
        assert!(dag.nodes[0].label.ends_with('…'));
        let empty = layout(&[], &BTreeMap::new());
        assert!(empty.width > 0 && empty.height > 0);
    }
}
