//! The python binding of stratacache: a thin layer over the `stratacache` core
//! crate. Placeholder until the python package issue lands; it builds against
//! the core so the workspace layout (and the core's public API) is checked.

/// Version of the core this binding is built against.
pub fn core_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_against_the_core() {
        let cache = stratacache::Cache::builder()
            .build()
            .expect("L1-only cache");
        assert_eq!(cache.namespace(), "default");
        assert_eq!(super::core_version(), "0.1.0");
    }
}
