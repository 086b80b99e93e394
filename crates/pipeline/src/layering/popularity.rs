//! nixpkgs' popularity contest: which store paths are most depended on, so that each of
//! the most popular gets a layer of its own and images built from the same nixpkgs share
//! them.
//!
//! nixpkgs unfolds the graph into a tree from every root (a path reachable along k routes
//! appears k times) and counts, for each path, the tree nodes whose subtree holds it. That
//! count has a closed form, computed here without unfolding anything:
//!
//! `popularity(p)` = the sum, over every path `y` whose closure holds `p` (`p` included),
//! of the number of routes from a root to `y`.
//!
//! Paths are ordered by popularity, most popular first; ties ascending by the path with
//! its hash moved to the end (`/nix/store/abc-foo-1.0` sorts as `foo-1.0-/nix/store/abc`),
//! so that the same graph always gives the same order.

use super::graph::Graph;

/// The popularity of every vertex of `g`, in vertex order. Counts beyond `u128` (a graph
/// of more than a hundred nested diamonds) saturate.
pub fn popularity(g: &Graph) -> Vec<u128> {
    let successors = g.successors();
    let predecessors = g.predecessors();
    // Routes from a root to each vertex, in topological order (roots have one).
    let mut routes = vec![0u128; g.len()];
    let mut waiting: Vec<usize> = predecessors.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..g.len()).filter(|&v| waiting[v] == 0).collect();
    for &root in &ready {
        routes[root] = 1;
    }
    while let Some(v) = ready.pop() {
        for &next in &successors[v] {
            routes[next] = routes[next].saturating_add(routes[v]);
            waiting[next] -= 1;
            if waiting[next] == 0 {
                ready.push(next);
            }
        }
    }
    let mut popularity = vec![0u128; g.len()];
    for (y, &count) in routes.iter().enumerate() {
        if count == 0 {
            continue;
        }
        for (p, &inside) in Graph::reach(&successors, [y]).iter().enumerate() {
            if inside {
                popularity[p] = popularity[p].saturating_add(count);
            }
        }
    }
    popularity
}

/// The key that breaks ties: the name with its first `-`-separated part moved to the end.
pub fn package_key(name: &str) -> String {
    match name.split_once('-') {
        Some((hash, rest)) => format!("{rest}-{hash}"),
        None => name.to_owned(),
    }
}

/// The vertices of `g` in the contest's order: most popular first, ties by
/// [`package_key`]. Vertices no root reaches (only possible in a graph with a cycle) come
/// last, in key order.
pub fn order(g: &Graph) -> Vec<usize> {
    let popularity = popularity(g);
    let mut order: Vec<usize> = (0..g.len()).collect();
    let keys: Vec<String> = g.vertices.iter().map(|v| package_key(&v.name)).collect();
    order.sort_by(|&a, &b| {
        popularity[b]
            .cmp(&popularity[a])
            .then_with(|| keys[a].cmp(&keys[b]))
    });
    order
}

#[cfg(test)]
mod tests {
    use super::super::graph::tests::{graph, three_roots};
    use super::*;

    fn named(g: &Graph, order: &[usize]) -> Vec<String> {
        order.iter().map(|&i| g.vertices[i].name.clone()).collect()
    }

    fn popularity_of(g: &Graph) -> Vec<(String, u128)> {
        let mut out: Vec<(String, u128)> = g.names().into_iter().zip(popularity(g)).collect();
        out.sort();
        out
    }

    /// The worked example of nixpkgs' closure-graph.py.
    #[test]
    fn the_worked_example_of_closure_graph_py() {
        let g = graph(
            &[
                ("A", "B"),
                ("A", "G"),
                ("B", "C"),
                ("B", "E"),
                ("C", "D"),
                ("C", "E"),
                ("D", "F"),
                ("E", "F"),
            ],
            &[],
        );
        assert_eq!(
            popularity_of(&g),
            [
                ("A", 1),
                ("B", 2),
                ("C", 3),
                ("D", 4),
                ("E", 5),
                ("F", 9),
                ("G", 2)
            ]
            .map(|(n, p)| (n.to_owned(), p))
        );
        assert_eq!(named(&g, &order(&g)), ["F", "E", "D", "C", "B", "G", "A"]);
    }

    /// closure-graph.py's unit test of the counting: foo → bar → baz → tux, foo → baz.
    #[test]
    fn counting_test_of_closure_graph_py() {
        let g = graph(
            &[
                ("foo", "bar"),
                ("bar", "baz"),
                ("baz", "tux"),
                ("foo", "baz"),
            ],
            &[],
        );
        assert_eq!(
            popularity_of(&g),
            [("bar", 2), ("baz", 4), ("foo", 1), ("tux", 6)].map(|(n, p)| (n.to_owned(), p))
        );
    }

    /// flatten-references-graph's `popularity_contest` test: several roots, an isolated path.
    #[test]
    fn several_roots_and_an_isolated_path() {
        let g = three_roots();
        assert_eq!(
            named(&g, &order(&g)),
            ["E", "D", "F", "B", "A", "C", "Root1", "Root2", "Root3", "X"]
        );
    }

    #[test]
    fn ties_sort_by_the_name_with_the_hash_last() {
        assert_eq!(
            package_key("/nix/store/abc-foo-1.0"),
            "foo-1.0-/nix/store/abc"
        );
        assert_eq!(package_key("nohyphen"), "nohyphen");
        // hello's closure in the nixpkgs manual: libidn2 before xgcc at equal popularity.
        let g = graph(
            &[
                ("/nix/store/h-hello-2.12.1", "/nix/store/g-glibc-2.38-27"),
                ("/nix/store/g-glibc-2.38-27", "/nix/store/i-libidn2-2.3.4"),
                (
                    "/nix/store/g-glibc-2.38-27",
                    "/nix/store/x-xgcc-12.3.0-libgcc",
                ),
                (
                    "/nix/store/i-libidn2-2.3.4",
                    "/nix/store/u-libunistring-1.1",
                ),
            ],
            &[],
        );
        let names: Vec<String> = named(&g, &order(&g))
            .into_iter()
            .map(|n| n.rsplit_once("store/").unwrap().1[2..].to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "libunistring-1.1",
                "libidn2-2.3.4",
                "xgcc-12.3.0-libgcc",
                "glibc-2.38-27",
                "hello-2.12.1"
            ]
        );
    }

    #[test]
    fn an_empty_graph_has_no_order() {
        assert!(order(&Graph::default()).is_empty());
    }
}

/// The contest as nixpkgs writes it, unfolding the graph into a tree and counting with a
/// cache per path: the second implementation the closed form is checked against.
#[cfg(test)]
mod literal {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::graph::Graph;

    type Counts = BTreeMap<usize, u128>;

    /// `graph_popularity_contest` on the subtree below `v`.
    fn contest(v: usize, successors: &[Vec<usize>], cache: &mut BTreeMap<usize, Counts>) -> Counts {
        let mut popularity = Counts::new();
        for &child in &successors[v] {
            *popularity.entry(child).or_default() += 1;
            if !cache.contains_key(&child) {
                let sub = contest(child, successors, cache);
                cache.insert(child, sub);
            }
            for (&p, &n) in &cache[&child] {
                *popularity.entry(p).or_default() += n + 1;
            }
        }
        popularity
    }

    fn literal(g: &Graph) -> Vec<u128> {
        let successors = g.successors();
        let predecessors = g.predecessors();
        let mut cache = BTreeMap::new();
        let mut popularity = vec![0u128; g.len()];
        for root in (0..g.len()).filter(|&v| predecessors[v].is_empty()) {
            popularity[root] += 1;
            for (p, n) in contest(root, &successors, &mut cache) {
                popularity[p] += n + 1;
            }
        }
        popularity
    }

    /// A random DAG: edges only from lower to higher numbers.
    fn dag() -> impl Strategy<Value = Graph> {
        (1usize..12).prop_flat_map(|n| {
            proptest::collection::vec((0..n, 0..n), 0..(n * 3)).prop_map(move |pairs| {
                let names: Vec<String> = (0..n).map(|i| format!("p{i:02}")).collect();
                Graph::from_references(names.iter().enumerate().map(|(i, name)| {
                    let refs: Vec<&str> = pairs
                        .iter()
                        .filter(|(a, b)| *a == i && b > a)
                        .map(|&(_, b)| names[b].as_str())
                        .collect();
                    (name.as_str(), 0, refs)
                }))
            })
        })
    }

    proptest! {
        #[test]
        fn the_closed_form_counts_as_the_unfolded_tree(g in dag()) {
            prop_assert_eq!(super::popularity(&g), literal(&g));
        }
    }
}
