//! `berth query [EXPR] [--output label|json|dot]`

use clap::{Args, ValueEnum};

use crate::cli::global::current_dir;
use crate::cli::stdout::Stdout;
use crate::cli::GlobalArgs;
use crate::error::Result;
use crate::frontend;
use crate::graph::{self, render_query, QueryExpr};

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

pub fn run(args: QueryArgs, _global: &GlobalArgs) -> Result<i32> {
    let cwd = current_dir()?;
    let workspace = crate::frontend::discover_workspace(&cwd)?;
    let package = workspace.package_of(&cwd).unwrap_or_default();
    let expr = QueryExpr::parse_in(&args.expr, &package)?;
    let graph = frontend::load(&workspace, &expr.patterns())?;
    let labels = expr.evaluate(&graph)?;
    let text = render_query(&graph, &labels, args.output.into());
    let mut stdout = Stdout::lock();
    stdout.print(format_args!("{text}"))?;
    stdout.flush()?;
    Ok(0)
}
