//! `berth query [EXPR] [--output label|json|dot]`

use std::io::Write;

use clap::{Args, ValueEnum};

use crate::cli::GlobalArgs;
use crate::error::Error;
use crate::frontend;
use crate::graph::{self, render_query, QueryExpr};
use crate::workspace::Workspace;

#[derive(Debug, Args)]
pub struct QueryArgs {
    /// `//...`, `//pkg/...`, `//pkg:all`, `//pkg:name`, `deps(EXPR)`, `rdeps(UNIVERSE, EXPR)`;
    /// `:name` and `...` are relative to the current directory
    #[arg(default_value = "//...")]
    pub expr: String,
    /// How to print the result
    #[arg(long, value_enum, default_value_t = QueryOutput::Label)]
    pub output: QueryOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryOutput {
    Label,
    Json,
    Dot,
}

impl From<QueryOutput> for graph::QueryOutput {
    fn from(output: QueryOutput) -> graph::QueryOutput {
        match output {
            QueryOutput::Label => graph::QueryOutput::Label,
            QueryOutput::Json => graph::QueryOutput::Json,
            QueryOutput::Dot => graph::QueryOutput::Dot,
        }
    }
}

pub fn run(args: QueryArgs, _global: &GlobalArgs) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let workspace = Workspace::discover(&cwd)?;
    let package = workspace.package_of(&cwd).unwrap_or_default();
    let expr = QueryExpr::parse_in(&args.expr, &package).map_err(Error::from)?;
    let graph = frontend::load(&workspace, &expr.patterns())?;
    let labels = expr.evaluate(&graph).map_err(Error::from)?;
    let text = render_query(&graph, &labels, args.output.into());
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        // A closed pipe (`berth query | head`) is not an error.
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(0),
    }
}
