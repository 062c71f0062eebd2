//! The workspace: its root, its packages, the labels and patterns that name
//! targets, and the locations errors point at. `WORKSPACE.star` itself is
//! evaluated by `frontend`.

mod label;
mod location;
mod pattern;
mod remote_cache;
mod root;
mod settings;

pub use label::{Label, LabelError};
pub use location::Location;
pub use pattern::{is_within, Pattern, PatternError};
pub use remote_cache::{RemoteCacheSetting, RemoteCacheUrl};
pub use root::{find_root, is_skipped_dir, Workspace, WorkspaceError, BUILD_FILES, WORKSPACE_FILE};
pub use settings::{LimitSettings, RegistrySetting, WorkspaceSettings};
