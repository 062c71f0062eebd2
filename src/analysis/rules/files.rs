//! `files`: a group of source files, placed at `/<package dir>/<src>`.

use crate::analysis::layer_contents::{files_entries, SourceRef};
use crate::analysis::{at, shared, Analyzer, FilesInfo, Provider};
use crate::error::Result;
use crate::graph::{FilesAttrs, TargetNode};

pub fn analyze(analyzer: &mut Analyzer<'_>, target: &TargetNode, attrs: &FilesAttrs) -> Result<Provider> {
    let mut sources = Vec::new();
    for label in &attrs.srcs {
        if analyzer.source_path(label).is_none() {
            return Err(at(
                target,
                format!(
                    "`srcs` of `{}` names `{label}`, which is {}, not a source file",
                    target.label,
                    analyzer.provider(label)?.describe()
                ),
            )
            .with_hint("`files` groups source files; put targets in an image's `packages` or `layers`"));
        }
        sources.push(SourceRef::new(label));
    }
    let entries = files_entries(target, attrs, &sources)?;
    Ok(Provider::Files(FilesInfo { entries: shared(entries) }))
}
