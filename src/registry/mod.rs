//! The registry client: pulls and pushes over the OCI distribution API.
