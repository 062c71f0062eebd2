//! The registry client of one session, made on first use: a build that
//! pulls nothing never builds an HTTP client, and one that pulls shares one
//! connection pool and token cache between analysis (resolving pinned
//! images) and execution (`fetch_blob`, `fetch_image`).

use std::sync::{Arc, OnceLock};

use crate::registry::{Client, ClientOptions, RegistryError};

/// A lazily made, shared [`Client`].
pub struct RegistryHandle {
    options: ClientOptions,
    client: OnceLock<Arc<Client>>,
}

impl RegistryHandle {
    /// A handle that makes its client from `options` when first asked.
    pub fn new(options: ClientOptions) -> RegistryHandle {
        RegistryHandle { options, client: OnceLock::new() }
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The client, made now if this is the first call.
    pub fn client(&self) -> Result<Arc<Client>, RegistryError> {
        if let Some(client) = self.client.get() {
            return Ok(client.clone());
        }
        // Two threads may both get here; one client wins, the other is dropped.
        let client = Arc::new(Client::new(self.options.clone())?);
        Ok(self.client.get_or_init(|| client).clone())
    }
}

impl std::fmt::Debug for RegistryHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryHandle")
            .field("options", &self.options)
            .field("made", &self.client.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_made_on_first_use() {
        let handle = RegistryHandle::new(ClientOptions { offline: true, ..ClientOptions::default() });
        assert!(format!("{handle:?}").contains("made: false"));
        let first = handle.client().unwrap();
        assert!(Arc::ptr_eq(&first, &handle.client().unwrap()));
        assert!(first.options().offline);
    }
}
