//! `layeringPipeline`: the steps of nixpkgs' `flatten-references-graph`, read from JSON and
//! applied to a references graph.
//!
//! A pipeline is a list of steps, each `[name, arguments…]`; the data flowing through is a
//! graph, a list or a dictionary of them. The steps and their meanings:
//!
//! | step | takes | gives |
//! |---|---|---|
//! | `["popularity_contest"]` | a graph | a list of one-path graphs, most popular first |
//! | `["limit_layers", N]` | a list of graphs | the first N−1, then one graph of all the rest |
//! | `["split_every", N]` | a graph | graphs of N consecutive paths each |
//! | `["remove_paths", PATHS]` | a graph | the graph without those paths |
//! | `["reverse"]` | a list | the list reversed |
//! | `["subcomponent_out", PATHS]` | a graph | `main`: what the paths reach (them included), `rest` |
//! | `["subcomponent_in", PATHS]` | a graph | `main`: what reaches the paths (them included), `rest` |
//! | `["split_paths", SPECS]` | a graph | `main`, `common`, `rest` (empty ones left out), see [`split_paths`] |
//! | `["flatten"]` | anything | the list of its graphs, depth first |
//! | `["over", KEY, STEP]` | a dictionary | the same, `STEP` applied to `KEY`'s value |
//! | `["map", STEP]` | a list | `STEP` applied to each item |
//! | `["pipe", [STEP…]]` | anything | the steps one after the other |
//!
//! The result is flattened into layers, each the paths of one graph in its vertex order;
//! empty layers are dropped.

use serde_json::Value;

use super::graph::Graph;
use super::popularity;

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `["popularity_contest"]`.
    PopularityContest,
    /// `["limit_layers", N]`.
    LimitLayers(usize),
    /// `["split_every", N]`.
    SplitEvery(usize),
    /// `["remove_paths", PATHS]`.
    RemovePaths(Vec<String>),
    /// `["reverse"]`.
    Reverse,
    /// `["subcomponent_in", PATHS]`.
    SubcomponentIn(Vec<String>),
    /// `["subcomponent_out", PATHS]`.
    SubcomponentOut(Vec<String>),
    /// `["split_paths", SPECS]`.
    SplitPaths(Vec<SplitSpec>),
    /// `["flatten"]`.
    Flatten,
    /// `["over", KEY, STEP]`.
    Over(String, Box<Step>),
    /// `["map", STEP]`.
    Map(Box<Step>),
    /// `["pipe", [STEP…]]`.
    Pipe(Vec<Step>),
}

/// What `split_paths` splits off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitSpec {
    /// A path.
    Path(String),
    /// `{"children_of": PATH or [PATHS]}`: the paths these reference directly.
    ChildrenOf(Vec<String>),
}

/// A pipeline of steps, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline(pub Vec<Step>);

/// Why a pipeline is not valid, or could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct StepError {
    /// Where: `[1]`, `[2][2][0]`, …
    pub at: String,
    /// What is wrong.
    pub message: String,
}

impl StepError {
    fn new(at: &str, message: impl Into<String>) -> Self {
        StepError {
            at: at.to_owned(),
            message: message.into(),
        }
    }
}

/// The data flowing through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// One graph.
    Graph(Graph),
    /// A list (nixpkgs' iterators are lists here).
    List(Vec<Data>),
    /// A dictionary, keys in insertion order.
    Dict(Vec<(String, Data)>),
}

impl Pipeline {
    /// The pipeline that nixpkgs uses without a `layeringPipeline`: the popularity
    /// contest, cut to `budget` layers.
    pub fn popularity(budget: usize) -> Pipeline {
        Pipeline(vec![Step::PopularityContest, Step::LimitLayers(budget)])
    }

    /// Reads a pipeline from its JSON form: a list of steps.
    pub fn from_json(value: &Value) -> Result<Pipeline, StepError> {
        let Value::Array(steps) = value else {
            return Err(StepError::new("", "expected a list of steps"));
        };
        steps
            .iter()
            .enumerate()
            .map(|(i, step)| parse_step(step, &format!("[{i}]")))
            .collect::<Result<_, _>>()
            .map(Pipeline)
    }

    /// Applies the pipeline to `graph`; returns the layers, each a list of names in the
    /// graph's vertex order, without empty layers.
    pub fn apply(&self, graph: Graph) -> Result<Vec<Vec<String>>, StepError> {
        let mut data = Data::Graph(graph);
        for (i, step) in self.0.iter().enumerate() {
            data = apply(step, data, &format!("[{i}]"))?;
        }
        Ok(flatten(data)
            .into_iter()
            .map(|g| g.names())
            .filter(|layer| !layer.is_empty())
            .collect())
    }
}

fn parse_step(value: &Value, at: &str) -> Result<Step, StepError> {
    let Some((Value::String(name), args)) = value.as_array().and_then(|a| a.split_first()) else {
        return Err(StepError::new(
            at,
            "expected a step: a list of its name and its arguments, such as [\"limit_layers\", 100]",
        ));
    };
    let arity = |n: usize| -> Result<(), StepError> {
        if args.len() == n {
            Ok(())
        } else {
            Err(StepError::new(
                at,
                format!(
                    "`{name}` takes {n} argument{}, got {}",
                    if n == 1 { "" } else { "s" },
                    args.len()
                ),
            ))
        }
    };
    let count = |value: &Value| -> Result<usize, StepError> {
        value
            .as_u64()
            .filter(|&n| n > 0)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                StepError::new(
                    at,
                    format!("`{name}` takes a count greater than 0, got {value}"),
                )
            })
    };
    let paths = |value: &Value| -> Result<Vec<String>, StepError> {
        match value {
            Value::String(path) => Ok(vec![path.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        StepError::new(at, format!("`{name}` takes paths, got {item}"))
                    })
                })
                .collect(),
            other => Err(StepError::new(
                at,
                format!("`{name}` takes a path or a list of paths, got {other}"),
            )),
        }
    };
    Ok(match name.as_str() {
        "popularity_contest" => {
            arity(0)?;
            Step::PopularityContest
        }
        "limit_layers" => {
            arity(1)?;
            Step::LimitLayers(count(&args[0])?)
        }
        "split_every" => {
            arity(1)?;
            Step::SplitEvery(count(&args[0])?)
        }
        "remove_paths" => {
            arity(1)?;
            Step::RemovePaths(paths(&args[0])?)
        }
        "reverse" => {
            arity(0)?;
            Step::Reverse
        }
        "subcomponent_in" => {
            arity(1)?;
            Step::SubcomponentIn(paths(&args[0])?)
        }
        "subcomponent_out" => {
            arity(1)?;
            Step::SubcomponentOut(paths(&args[0])?)
        }
        "split_paths" => {
            arity(1)?;
            let Value::Array(specs) = &args[0] else {
                return Err(StepError::new(
                    at,
                    "`split_paths` takes a list of paths and {\"children_of\": …}",
                ));
            };
            let specs = specs
                .iter()
                .map(|spec| match spec {
                    Value::String(path) => Ok(SplitSpec::Path(path.clone())),
                    Value::Object(map) if map.len() == 1 && map.contains_key("children_of") => {
                        Ok(SplitSpec::ChildrenOf(paths(&map["children_of"])?))
                    }
                    other => Err(StepError::new(
                        at,
                        format!(
                            "`split_paths` takes paths and {{\"children_of\": PATHS}}, got {other}"
                        ),
                    )),
                })
                .collect::<Result<_, _>>()?;
            Step::SplitPaths(specs)
        }
        "flatten" => {
            arity(0)?;
            Step::Flatten
        }
        "over" => {
            arity(2)?;
            let Value::String(key) = &args[0] else {
                return Err(StepError::new(
                    at,
                    format!("`over` takes a key first, got {}", args[0]),
                ));
            };
            Step::Over(
                key.clone(),
                Box::new(parse_step(&args[1], &format!("{at}[2]"))?),
            )
        }
        "map" => {
            arity(1)?;
            Step::Map(Box::new(parse_step(&args[0], &format!("{at}[1]"))?))
        }
        "pipe" => {
            arity(1)?;
            let Value::Array(steps) = &args[0] else {
                return Err(StepError::new(at, "`pipe` takes a list of steps"));
            };
            Step::Pipe(
                steps
                    .iter()
                    .enumerate()
                    .map(|(i, step)| parse_step(step, &format!("{at}[1][{i}]")))
                    .collect::<Result<_, _>>()?,
            )
        }
        other => {
            return Err(StepError::new(
                at,
                format!(
                    "unknown step `{other}`; the steps are popularity_contest, limit_layers, \
                     split_every, remove_paths, reverse, subcomponent_in, subcomponent_out, \
                     split_paths, flatten, over, map, pipe"
                ),
            ));
        }
    })
}

fn kind(data: &Data) -> &'static str {
    match data {
        Data::Graph(_) => "a graph",
        Data::List(_) => "a list",
        Data::Dict(_) => "a dictionary",
    }
}

fn wrong(step: &str, wants: &str, got: &Data, at: &str) -> StepError {
    StepError::new(at, format!("`{step}` takes {wants}, got {}", kind(got)))
}

fn graph(data: Data, step: &str, at: &str) -> Result<Graph, StepError> {
    match data {
        Data::Graph(g) => Ok(g),
        other => Err(wrong(step, "a graph", &other, at)),
    }
}

fn list(data: Data, step: &str, at: &str) -> Result<Vec<Data>, StepError> {
    match data {
        Data::List(items) => Ok(items),
        other => Err(wrong(step, "a list", &other, at)),
    }
}

fn apply(step: &Step, data: Data, at: &str) -> Result<Data, StepError> {
    Ok(match step {
        Step::PopularityContest => {
            let g = graph(data, "popularity_contest", at)?;
            let singles = popularity::order(&g)
                .into_iter()
                .map(|v| Data::Graph(g.single(v)))
                .collect();
            Data::List(singles)
        }
        Step::LimitLayers(n) => {
            let items = list(data, "limit_layers", at)?;
            let mut out = Vec::with_capacity(*n);
            let mut rest = Graph::default();
            for (i, item) in items.into_iter().enumerate() {
                let g = graph(item, "limit_layers", at)?;
                if i + 1 < *n {
                    out.push(Data::Graph(g));
                } else {
                    rest = rest.union(&g);
                }
            }
            out.push(Data::Graph(rest));
            Data::List(out)
        }
        Step::SplitEvery(n) => {
            let g = graph(data, "split_every", at)?;
            let chunks = (0..g.len())
                .step_by(*n)
                .map(|start| {
                    let keep: Vec<bool> =
                        (0..g.len()).map(|v| v >= start && v < start + n).collect();
                    Data::Graph(g.induced(&keep))
                })
                .collect();
            Data::List(chunks)
        }
        Step::RemovePaths(paths) => {
            let g = graph(data, "remove_paths", at)?;
            let gone = g.flags_of(paths.iter().map(String::as_str));
            let keep: Vec<bool> = gone.iter().map(|&g| !g).collect();
            Data::Graph(g.induced(&keep))
        }
        Step::Reverse => {
            let mut items = list(data, "reverse", at)?;
            items.reverse();
            Data::List(items)
        }
        Step::SubcomponentIn(paths) | Step::SubcomponentOut(paths) => {
            let inward = matches!(step, Step::SubcomponentIn(_));
            let g = graph(
                data,
                if inward {
                    "subcomponent_in"
                } else {
                    "subcomponent_out"
                },
                at,
            )?;
            let next = if inward {
                g.predecessors()
            } else {
                g.successors()
            };
            let start = g.flags_of(paths.iter().map(String::as_str));
            let main = Graph::reach(&next, (0..g.len()).filter(|&v| start[v]));
            let rest: Vec<bool> = main.iter().map(|&m| !m).collect();
            Data::Dict(vec![
                ("main".to_owned(), Data::Graph(g.induced(&main))),
                ("rest".to_owned(), Data::Graph(g.induced(&rest))),
            ])
        }
        Step::SplitPaths(specs) => split_paths(graph(data, "split_paths", at)?, specs),
        Step::Flatten => Data::List(flatten(data).into_iter().map(Data::Graph).collect()),
        Step::Over(key, inner) => {
            let Data::Dict(mut entries) = data else {
                return Err(wrong("over", "a dictionary", &data, at));
            };
            let Some(slot) = entries.iter_mut().find(|(k, _)| k == key) else {
                let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
                return Err(StepError::new(
                    at,
                    format!("`over`: no key `{key}` (the keys are {})", keys.join(", ")),
                ));
            };
            let value = std::mem::replace(&mut slot.1, Data::List(Vec::new()));
            slot.1 = apply(inner, value, &format!("{at}[2]"))?;
            Data::Dict(entries)
        }
        Step::Map(inner) => Data::List(
            list(data, "map", at)?
                .into_iter()
                .map(|item| apply(inner, item, &format!("{at}[1]")))
                .collect::<Result<_, _>>()?,
        ),
        Step::Pipe(steps) => {
            let mut data = data;
            for (i, inner) in steps.iter().enumerate() {
                data = apply(inner, data, &format!("{at}[1][{i}]"))?;
            }
            data
        }
    })
}

/// One step applied by itself, for tests that look at a dictionary before flattening.
#[cfg(test)]
pub(crate) fn apply_for_tests(step: &Step, data: Data) -> Data {
    apply(step, data, "[0]").unwrap()
}

/// The graphs of `data`, depth first, a dictionary's values in insertion order (`main`,
/// `common`, `rest`), as Python iterates them.
fn flatten(data: Data) -> Vec<Graph> {
    match data {
        Data::Graph(g) => vec![g],
        Data::List(items) => items.into_iter().flat_map(flatten).collect(),
        Data::Dict(entries) => entries.into_iter().flat_map(|(_, d)| flatten(d)).collect(),
    }
}

/// `split_paths`: splits off the paths `specs` name with what they reference.
///
/// `main` holds what only the split paths reach, `common` what the rest of the graph
/// reaches too (through paths other than the split ones), `rest` everything else. The
/// rest is what the graph's root reaches once the edges into the split paths are gone
/// (with several roots, a made-up root above them all). Without a match the whole graph
/// is `rest`; when the root itself is split off, it is all `main`.
pub fn split_paths(g: Graph, specs: &[SplitSpec]) -> Data {
    let successors = g.successors();
    let mut split = vec![false; g.len()];
    for spec in specs {
        match spec {
            SplitSpec::Path(path) => {
                if let Some(v) = g.find(path) {
                    split[v] = true;
                }
            }
            SplitSpec::ChildrenOf(paths) => {
                for path in paths {
                    if let Some(v) = g.find(path) {
                        for &child in &successors[v] {
                            split[child] = true;
                        }
                    }
                }
            }
        }
    }
    if !split.iter().any(|&s| s) {
        return Data::Dict(vec![("rest".to_owned(), Data::Graph(g))]);
    }
    let predecessors = g.predecessors();
    let roots: Vec<usize> = (0..g.len())
        .filter(|&v| predecessors[v].is_empty())
        .collect();
    if let [root] = roots[..]
        && split[root]
    {
        return Data::Dict(vec![("main".to_owned(), Data::Graph(g))]);
    }
    let split_off = Graph::reach(&successors, (0..g.len()).filter(|&v| split[v]));
    // The graph without the edges into split paths: what the root reaches then.
    let mut cut = g.clone();
    cut.edges.retain(|&(_, to)| !split[to]);
    let cut_successors = cut.successors();
    let start: Vec<usize> = if roots.len() == 1 {
        roots
    } else {
        // The made-up root's edges to every root, less those into split paths.
        roots.into_iter().filter(|&r| !split[r]).collect()
    };
    let reached = Graph::reach(&cut_successors, start);
    let common: Vec<bool> = (0..g.len()).map(|v| split_off[v] && reached[v]).collect();
    let main: Vec<bool> = (0..g.len()).map(|v| split_off[v] && !reached[v]).collect();
    let rest: Vec<bool> = (0..g.len()).map(|v| reached[v] && !split_off[v]).collect();
    let mut out = Vec::new();
    for (key, keep) in [("main", main), ("common", common), ("rest", rest)] {
        if keep.iter().any(|&k| k) {
            out.push((key.to_owned(), Data::Graph(cut.induced(&keep))));
        }
    }
    Data::Dict(out)
}
