//! The test cases of nixpkgs' flatten-references-graph, on the same graphs.

use serde_json::json;

use super::graph::Graph;
use super::graph::tests::{edge_names, graph, sorted_names, three_roots};
use super::steps::{Data, Pipeline, SplitSpec, split_paths};

#[allow(clippy::needless_pass_by_value)] // called with `json!` literals
fn pipeline(value: serde_json::Value) -> Pipeline {
    Pipeline::from_json(&value).unwrap_or_else(|e| panic!("{value}: {e}"))
}

fn layers(p: serde_json::Value, g: Graph) -> Vec<Vec<String>> {
    pipeline(p).apply(g).unwrap()
}

fn sets(layers: Vec<Vec<String>>) -> Vec<Vec<String>> {
    layers
        .into_iter()
        .map(|mut l| {
            l.sort();
            l
        })
        .collect()
}

fn strings(layers: &[&[&str]]) -> Vec<Vec<String>> {
    layers
        .iter()
        .map(|l| l.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

/// `make_test_graph()` of `pipe_test.py`.
fn pipe_graph() -> Graph {
    graph(
        &[
            ("Root1", "A"),
            ("A", "B"),
            ("A", "C"),
            ("B", "D"),
            ("B", "E"),
            ("E", "F"),
            ("B", "G"),
            ("Root2", "B"),
            ("Root3", "C"),
        ],
        &[],
    )
}

#[test]
fn pipe_test_1_split_subcomponent_contest_map_and_limit() {
    let got = layers(
        json!([
            ["split_paths", ["B"]],
            [
                "over",
                "main",
                [
                    "pipe",
                    [
                        ["subcomponent_in", ["B"]],
                        ["over", "rest", ["popularity_contest"]]
                    ]
                ]
            ],
            ["flatten"],
            ["map", ["remove_paths", "Root3"]],
            ["limit_layers", 5]
        ]),
        pipe_graph(),
    );
    assert_eq!(
        sets(got),
        strings(&[
            &["B"],
            &["F"],
            &["D"],
            &["E"],
            &["A", "C", "G", "Root1", "Root2"]
        ])
    );
}

#[test]
fn pipe_test_2_contest_reverse_and_limit() {
    let g = || graph(&[("Root1", "A"), ("A", "B")], &["Root2"]);
    assert_eq!(
        layers(json!([["popularity_contest"]]), g()),
        strings(&[&["B"], &["A"], &["Root1"], &["Root2"]])
    );
    assert_eq!(
        sets(layers(
            json!([["popularity_contest"], ["limit_layers", 3]]),
            g()
        )),
        strings(&[&["B"], &["A"], &["Root1", "Root2"]])
    );
    assert_eq!(
        sets(layers(
            json!([["popularity_contest"], ["reverse"], ["limit_layers", 3]]),
            g()
        )),
        strings(&[&["Root2"], &["Root1"], &["A", "B"]])
    );
}

/// The graph of `subcomponent_test.py` and `split_paths_test.py` (there: `A→D, D→E,
/// B→F` in place of `A→C, B→E`).
fn component_graph() -> Graph {
    graph(
        &[
            ("Root1", "A"),
            ("A", "B"),
            ("A", "C"),
            ("B", "D"),
            ("B", "E"),
            ("Root2", "B"),
            ("Root3", "C"),
        ],
        &["X"],
    )
}

fn dict(data: Data) -> Vec<(String, Graph)> {
    let Data::Dict(entries) = data else {
        panic!("not a dictionary: {data:?}")
    };
    entries
        .into_iter()
        .map(|(k, v)| match v {
            Data::Graph(g) => (k, g),
            other => panic!("{k}: {other:?}"),
        })
        .collect()
}

fn names(edges: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = edges
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    out.sort();
    out
}

fn subcomponent(inward: bool, paths: &[&str], g: Graph) -> (Graph, Graph) {
    let step = if inward {
        "subcomponent_in"
    } else {
        "subcomponent_out"
    };
    let p = pipeline(json!([[step, paths]]));
    // Keep the dictionary: apply the one step by hand.
    let data = super::steps::apply_for_tests(&p.0[0], Data::Graph(g));
    let entries = dict(data);
    assert_eq!(
        entries.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["main", "rest"]
    );
    let mut it = entries.into_iter().map(|(_, g)| g);
    (it.next().unwrap(), it.next().unwrap())
}

#[test]
fn subcomponent_out_and_in() {
    let (main, rest) = subcomponent(false, &["B"], component_graph());
    assert_eq!(edge_names(&main), names(&[("B", "D"), ("B", "E")]));
    assert_eq!(sorted_names(&main), ["B", "D", "E"]);
    assert_eq!(
        edge_names(&rest),
        names(&[("Root1", "A"), ("A", "C"), ("Root3", "C")])
    );
    assert_eq!(
        sorted_names(&rest),
        ["A", "C", "Root1", "Root2", "Root3", "X"]
    );

    let (main, rest) = subcomponent(false, &["B", "Root3"], component_graph());
    assert_eq!(
        edge_names(&main),
        names(&[("B", "D"), ("B", "E"), ("Root3", "C")])
    );
    assert_eq!(edge_names(&rest), names(&[("Root1", "A")]));
    assert_eq!(sorted_names(&rest), ["A", "Root1", "Root2", "X"]);

    let (main, rest) = subcomponent(true, &["B"], component_graph());
    assert_eq!(
        edge_names(&main),
        names(&[("Root1", "A"), ("A", "B"), ("Root2", "B")])
    );
    assert_eq!(edge_names(&rest), names(&[("Root3", "C")]));
    assert_eq!(sorted_names(&rest), ["C", "D", "E", "Root3", "X"]);

    let (main, rest) = subcomponent(true, &["B", "Root3"], component_graph());
    assert_eq!(sorted_names(&main), ["A", "B", "Root1", "Root2", "Root3"]);
    assert_eq!(sorted_names(&rest), ["C", "D", "E", "X"]);
    assert!(rest.edges.is_empty());

    let (main, rest) = subcomponent(true, &[], component_graph());
    assert!(main.is_empty());
    assert_eq!(rest, component_graph());
}

fn keys(entries: &[(String, Graph)]) -> Vec<&str> {
    entries.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn split_paths_as_nixpkgs_tests_it() {
    let path = |p: &str| SplitSpec::Path(p.to_owned());
    let got = dict(split_paths(three_roots(), &[]));
    assert_eq!(keys(&got), ["rest"]);
    assert_eq!(got[0].1, three_roots());

    let got = dict(split_paths(three_roots(), &[path("B")]));
    assert_eq!(keys(&got), ["main", "common", "rest"]);
    assert_eq!(edge_names(&got[0].1), names(&[("B", "F")]));
    assert_eq!(edge_names(&got[1].1), names(&[("D", "E")]));
    assert_eq!(
        edge_names(&got[2].1),
        names(&[("Root1", "A"), ("Root3", "C")])
    );
    assert_eq!(
        sorted_names(&got[2].1),
        ["A", "C", "Root1", "Root2", "Root3", "X"]
    );

    let got = dict(split_paths(three_roots(), &[path("B"), path("Root3")]));
    assert_eq!(keys(&got), ["main", "common", "rest"]);
    assert_eq!(edge_names(&got[0].1), names(&[("B", "F"), ("Root3", "C")]));
    assert_eq!(edge_names(&got[1].1), names(&[("D", "E")]));
    assert_eq!(sorted_names(&got[2].1), ["A", "Root1", "Root2", "X"]);

    let got = dict(split_paths(three_roots(), &[path("D")]));
    assert_eq!(keys(&got), ["main", "rest"]);
    assert_eq!(edge_names(&got[0].1), names(&[("D", "E")]));
    assert_eq!(
        edge_names(&got[1].1),
        names(&[
            ("Root1", "A"),
            ("A", "B"),
            ("B", "F"),
            ("Root2", "B"),
            ("Root3", "C")
        ])
    );

    let got = dict(split_paths(Graph::default(), &[path("B")]));
    assert_eq!(keys(&got), ["rest"]);
    assert!(got[0].1.is_empty());

    let children = SplitSpec::ChildrenOf(vec!["A".to_owned()]);
    let got = dict(split_paths(three_roots(), &[children]));
    // A's children B and D are split off with what they reference; with the edges into
    // them gone, nothing else reaches any of it.
    assert_eq!(keys(&got), ["main", "rest"]);
    assert_eq!(sorted_names(&got[0].1), ["B", "D", "E", "F"]);
    assert_eq!(
        sorted_names(&got[1].1),
        ["A", "C", "Root1", "Root2", "Root3", "X"]
    );
}

/// `flatten_references_graph_test.py`: vertex order (by NAR size) is the order in a layer.
fn sized_graph() -> Graph {
    Graph::from_references([
        ("A", 2, vec!["A", "C"]),
        ("B", 4, vec!["C", "D"]),
        ("C", 6, vec!["C"]),
        ("D", 8, vec!["D"]),
    ])
}

#[test]
fn layers_keep_the_vertex_order() {
    assert_eq!(
        layers(json!([["split_paths", ["B"]]]), sized_graph()),
        strings(&[&["B", "D"], &["C"], &["A"]])
    );
    assert_eq!(
        layers(
            json!([
                ["split_paths", ["B"]],
                ["over", "main", ["subcomponent_in", ["B"]]]
            ]),
            sized_graph()
        ),
        strings(&[&["B"], &["D"], &["C"], &["A"]])
    );
    let without = |name: &str| {
        let g = sized_graph();
        let keep: Vec<bool> = g.vertices.iter().map(|v| v.name != name).collect();
        g.induced(&keep)
    };
    assert_eq!(
        layers(json!([["split_paths", ["B"]]]), without("A")),
        strings(&[&["B", "C", "D"]])
    );
    assert_eq!(
        layers(json!([["split_paths", ["B"]]]), without("D")),
        strings(&[&["B"], &["C"], &["A"]])
    );
}

#[test]
fn limit_layers_and_split_every() {
    let g = sized_graph();
    assert_eq!(
        layers(
            json!([["popularity_contest"], ["limit_layers", 1]]),
            g.clone()
        )
        .len(),
        1
    );
    assert_eq!(
        layers(json!([["split_every", 3]]), g),
        strings(&[&["A", "B", "C"], &["D"]])
    );
}

#[test]
fn bad_pipelines_say_where() {
    let err = |v: serde_json::Value| Pipeline::from_json(&v).unwrap_err().to_string();
    assert_eq!(err(json!("x")), ": expected a list of steps");
    assert_eq!(
        err(json!([["limit_layers", 0]])),
        "[0]: `limit_layers` takes a count greater than 0, got 0"
    );
    assert_eq!(
        err(json!([["popularity_contest"], ["pipe", [["frobnicate"]]]])),
        "[1][1][0]: unknown step `frobnicate`; the steps are popularity_contest, limit_layers, \
         split_every, remove_paths, reverse, subcomponent_in, subcomponent_out, split_paths, \
         flatten, over, map, pipe"
    );
    assert_eq!(
        err(json!([["reverse", 1]])),
        "[0]: `reverse` takes 0 arguments, got 1"
    );
    let applied = pipeline(json!([["limit_layers", 2]])).apply(sized_graph());
    assert_eq!(
        applied.unwrap_err().to_string(),
        "[0]: `limit_layers` takes a list, got a graph"
    );
}
