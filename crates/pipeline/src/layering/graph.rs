//! The references graph of a closure: vertices in an order that matters (it is the order of
//! the paths inside a layer), edges from a path to the paths it references.

use std::collections::BTreeMap;

/// One store path of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertex {
    /// The store path (or any name, in tests).
    pub name: String,
}

/// A directed graph of store paths, as nixpkgs' layering code keeps it: vertices in order,
/// edges from a path to what it references (no self-references).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// The vertices, in order.
    pub vertices: Vec<Vertex>,
    /// Edges as (from, to) indices into `vertices`, sorted, without duplicates.
    pub edges: Vec<(usize, usize)>,
}

impl Graph {
    /// The graph of `nodes` (name, NAR size, references): vertices sorted by NAR size, ties
    /// in the given order (as nixpkgs sorts them, stably); references to paths outside the
    /// nodes and to the path itself are dropped.
    pub fn from_references<'a>(
        nodes: impl IntoIterator<Item = (&'a str, u64, Vec<&'a str>)>,
    ) -> Graph {
        let mut nodes: Vec<(&str, u64, Vec<&str>)> = nodes.into_iter().collect();
        nodes.sort_by_key(|(_, size, _)| *size);
        let index: BTreeMap<&str, usize> = nodes
            .iter()
            .enumerate()
            .map(|(i, (name, _, _))| (*name, i))
            .collect();
        let mut edges = Vec::new();
        for (from, (name, _, references)) in nodes.iter().enumerate() {
            for reference in references {
                if let Some(&to) = index.get(reference)
                    && reference != name
                {
                    edges.push((from, to));
                }
            }
        }
        edges.sort_unstable();
        edges.dedup();
        Graph {
            vertices: nodes
                .iter()
                .map(|(name, _, _)| Vertex {
                    name: (*name).to_owned(),
                })
                .collect(),
            edges,
        }
    }

    /// The number of vertices.
    pub fn len(&self) -> usize {
        self.vertices.len()
    }

    /// Whether the graph has no vertex.
    pub fn is_empty(&self) -> bool {
        self.vertices.is_empty()
    }

    /// The names of the vertices, in order.
    pub fn names(&self) -> Vec<String> {
        self.vertices.iter().map(|v| v.name.clone()).collect()
    }

    /// The index of the vertex named `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.vertices.iter().position(|v| v.name == name)
    }

    /// For each vertex, what it references, in vertex order.
    pub fn successors(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.len()];
        for &(from, to) in &self.edges {
            out[from].push(to);
        }
        out
    }

    /// For each vertex, what references it, in vertex order.
    pub fn predecessors(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.len()];
        for &(from, to) in &self.edges {
            out[to].push(from);
        }
        for list in &mut out {
            list.sort_unstable();
        }
        out
    }

    /// Everything reachable from `start` along `next` (`start` included), as flags.
    pub fn reach(next: &[Vec<usize>], start: impl IntoIterator<Item = usize>) -> Vec<bool> {
        let mut seen = vec![false; next.len()];
        let mut stack: Vec<usize> = start.into_iter().collect();
        while let Some(v) = stack.pop() {
            if std::mem::replace(&mut seen[v], true) {
                continue;
            }
            stack.extend(next[v].iter().copied().filter(|&n| !seen[n]));
        }
        seen
    }

    /// The graph of vertex `v` alone (no self-references, so no edges).
    #[must_use]
    pub fn single(&self, v: usize) -> Graph {
        Graph {
            vertices: vec![self.vertices[v].clone()],
            edges: Vec::new(),
        }
    }

    /// The subgraph of the vertices whose flag is set, in their order, with the edges
    /// between them.
    #[must_use]
    pub fn induced(&self, keep: &[bool]) -> Graph {
        let mut new_index = vec![usize::MAX; self.len()];
        let mut vertices = Vec::new();
        for (i, vertex) in self.vertices.iter().enumerate() {
            if keep[i] {
                new_index[i] = vertices.len();
                vertices.push(vertex.clone());
            }
        }
        let edges = self
            .edges
            .iter()
            .filter(|&&(from, to)| keep[from] && keep[to])
            .map(|&(from, to)| (new_index[from], new_index[to]))
            .collect();
        Graph { vertices, edges }
    }

    /// This graph followed by `other`, as one graph with the vertices of both (a disjoint
    /// union, as nixpkgs merges layers).
    #[must_use]
    pub fn union(mut self, other: &Graph) -> Graph {
        let offset = self.len();
        self.vertices.extend(other.vertices.iter().cloned());
        self.edges
            .extend(other.edges.iter().map(|&(a, b)| (a + offset, b + offset)));
        self
    }

    /// The flags of the vertices named in `names` (unknown names are ignored).
    pub fn flags_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<bool> {
        let mut flags = vec![false; self.len()];
        for name in names {
            if let Some(i) = self.find(name) {
                flags[i] = true;
            }
        }
        flags
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A graph of named vertices (NAR size 0, in order of first mention) and edges.
    pub(crate) fn graph(edges: &[(&str, &str)], extra: &[&str]) -> Graph {
        let mut names: Vec<&str> = Vec::new();
        for &(a, b) in edges {
            for n in [a, b] {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        for &n in extra {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        Graph::from_references(names.iter().map(|&n| {
            let refs = edges.iter().filter(|(a, _)| *a == n).map(|(_, b)| *b);
            (n, 0, refs.collect())
        }))
    }

    /// The graph of flatten-references-graph's tests of `popularity_contest` and
    /// `split_paths`: three roots, shared children, and an isolated path `X`.
    pub(crate) fn three_roots() -> Graph {
        graph(
            &[
                ("Root1", "A"),
                ("A", "B"),
                ("A", "D"),
                ("D", "E"),
                ("B", "D"),
                ("B", "F"),
                ("Root2", "B"),
                ("Root3", "C"),
            ],
            &["X"],
        )
    }

    /// The edges as name pairs, sorted.
    pub(crate) fn edge_names(g: &Graph) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = g
            .edges
            .iter()
            .map(|&(a, b)| (g.vertices[a].name.clone(), g.vertices[b].name.clone()))
            .collect();
        out.sort();
        out
    }

    /// The vertex names, sorted.
    pub(crate) fn sorted_names(g: &Graph) -> Vec<String> {
        let mut names = g.names();
        names.sort();
        names
    }

    #[test]
    fn vertices_sorted_by_nar_size_stably_and_self_references_dropped() {
        let g = Graph::from_references([
            ("D", 0, vec!["D"]),
            ("B", 4, vec!["B"]),
            ("E", 5, vec!["E"]),
            ("A", 10, vec!["C", "B"]),
            ("C", 6, vec!["C", "E", "D"]),
            ("F", 2, vec!["F"]),
        ]);
        assert_eq!(g.names(), ["D", "F", "B", "E", "C", "A"]);
        assert_eq!(
            edge_names(&g),
            [("A", "B"), ("A", "C"), ("C", "D"), ("C", "E")]
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
    }
}
