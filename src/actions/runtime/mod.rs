//! The container runtime as actions see it: a trait the build step
//! (`run_step`) and `berth run` call, which `exec` implements over runc
//! (`exec::RuncRuntime`) and tests implement with a fake. Actions never
//! import `exec`; a second implementation (rootless, user-namespaced) plugs
//! in behind the same trait.
//!
//! - `container`: the [`ContainerRuntime`] trait, what runs ([`Process`])
//!   and how it ended ([`Outcome`]). Every method takes the step's one
//!   deadline.
//! - `image`: what an image config says about running its process (env,
//!   workdir, user), shared by every runtime.
//! - `capture`: reading a step's outputs back from the container's root.

mod capture;
mod container;
mod image;

pub use capture::{capture, Captured, CapturedBody};
pub use container::{check_deadline, ContainerRoot, ContainerRuntime, Outcome, Process, RuntimeError, Stdio};
pub use image::{merge_env, resolve_user, ImageRuntimeConfig, DEFAULT_PATH};
