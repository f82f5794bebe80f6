//! Which Kubernetes namespaces each workspace may deliver Secrets to: an
//! explicit server setting, so one workspace cannot take a Secret name in a
//! namespace that belongs to another. With no entry a workspace may deliver
//! nowhere.

use std::collections::{BTreeMap, BTreeSet};

/// The namespaces each workspace may deliver Secrets to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedNamespaces {
    by_workspace: BTreeMap<String, BTreeSet<String>>,
}

impl AllowedNamespaces {
    /// A map of workspace id → allowed namespaces.
    pub fn new(by_workspace: BTreeMap<String, BTreeSet<String>>) -> Self {
        Self { by_workspace }
    }

    /// Whether `workspace` may deliver a Secret into `namespace`.
    pub fn allows(&self, workspace: &str, namespace: &str) -> bool {
        self.by_workspace
            .get(workspace)
            .is_some_and(|namespaces| namespaces.contains(namespace))
    }

    /// The namespaces `workspace` may deliver to, sorted.
    pub fn of(&self, workspace: &str) -> Vec<&str> {
        self.by_workspace
            .get(workspace)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }

    /// Whether no workspace may deliver anywhere.
    pub fn is_empty(&self) -> bool {
        self.by_workspace.values().all(BTreeSet::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_pairs_are_allowed_and_nothing_is_by_default() {
        assert!(!AllowedNamespaces::default().allows("acme", "airflow"));
        assert!(AllowedNamespaces::default().is_empty());
        let allowed = AllowedNamespaces::new(BTreeMap::from([(
            "acme".to_owned(),
            BTreeSet::from(["airflow-b".to_owned(), "airflow-a".to_owned()]),
        )]));
        assert!(allowed.allows("acme", "airflow-a"));
        assert!(!allowed.allows("acme", "airflow-c"));
        assert!(!allowed.allows("globex", "airflow-a"));
        assert!(!allowed.allows("ACME", "airflow-a"));
        assert_eq!(allowed.of("acme"), ["airflow-a", "airflow-b"]);
        assert!(allowed.of("globex").is_empty());
        assert!(!allowed.is_empty());
    }
}
