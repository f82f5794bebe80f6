//! CreateConnection: a connection and, in the same transaction, its links.

use super::*;

impl ControlService {
    /// Creates a connection and its links in one transaction, or returns the
    /// connection an earlier call with the same request_id created.
    pub(crate) async fn create_connection(
        &self,
        principal: &Principal,
        create: ConnectionCreate,
    ) -> ControlResult<connection::Model> {
        let ConnectionCreate {
            parent,
            connection_id,
            connection,
            links: requested_links,
            request_id,
        } = create;
        let workspace = parent.workspace;
        self.authorize(principal, &workspace, Action::WriteConnection)
            .await?;
        idempotency::validate(&request_id)?;
        if let Some(resource) =
            idempotency::previous(self.store.db(), &workspace, "CreateConnection", &request_id)
                .await?
        {
            let name = ConnectionName::parse("name", &resource)?;
            return find_connection(self.store.db(), &name).await;
        }
        let mut violations = Vec::new();
        if let Err(why) = conn_id::validate(&connection_id) {
            violations.push(FieldViolation::new("connection_id", why));
        }
        let connection = required("connection", connection)?;
        let spec = with_derived_conn_type(connection.spec);
        if let Err(found) = validate_connection(&spec) {
            violations.extend(
                found
                    .into_iter()
                    .map(|violation| violation.scope("connection")),
            );
        }
        let excluded = parse_excluded(
            &workspace,
            &connection.excluded_deployments,
            "connection",
            &mut violations,
        );
        let mut new_links: Vec<(String, Overrides)> = Vec::new();
        for (index, link) in requested_links.into_iter().enumerate() {
            let scope = format!("links[{index}]");
            let deployment = match deployment_ref(
                &format!("{scope}.deployment"),
                &workspace,
                &link.deployment,
            ) {
                Ok(id) => id,
                Err(violation) => {
                    violations.push(violation);
                    continue;
                }
            };
            if new_links.iter().any(|(id, _)| *id == deployment) {
                violations.push(FieldViolation::new(
                    format!("{scope}.deployment"),
                    "is linked twice",
                ));
                continue;
            }
            let overrides = link.overrides;
            let overrides_scope = format!("{scope}.overrides");
            match validate_overrides(&spec.type_key, &overrides) {
                Err(found) => violations.extend(
                    found
                        .into_iter()
                        .map(|violation| violation.scope(&overrides_scope)),
                ),
                Ok(()) => violations.extend(validate_merged(&spec, &overrides, &overrides_scope)),
            }
            new_links.push((deployment, overrides));
        }
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }

        let name = ConnectionName {
            workspace: workspace.clone(),
            conn_id: connection_id,
        };
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // With Vault the secrets are written first, under row ids reserved
            // now, so no write lock is held while Vault answers.
            let reserved = if remote {
                Some(self.store.reserve_id("connection").await?)
            } else {
                None
            };
            let staged = match reserved {
                Some(pk) => stage_connection_secrets(self, &workspace, pk, &spec, None).await?,
                None => StagedSecrets::Pending(spec.split_secrets().1),
            };
            let mut staged_links = Vec::with_capacity(new_links.len());
            let mut next_link_id = 0;
            for (_, overrides) in &new_links {
                let staged_link = links::stage_new_link(
                    self,
                    &workspace,
                    &spec.type_key,
                    overrides,
                    next_link_id,
                )
                .await?;
                if let Some(id) = staged_link.id {
                    next_link_id = id + 1;
                }
                staged_links.push(staged_link);
            }
            let now = self.now();
            let write = self.store.begin_write().await?;
            // A concurrent call with the same request_id may have committed since
            // the check above; the write lock orders this one after it.
            if let Some(resource) =
                idempotency::previous(&write.txn, &workspace, "CreateConnection", &request_id)
                    .await?
            {
                let name = ConnectionName::parse("name", &resource)?;
                return find_connection(&write.txn, &name).await;
            }
            let existing =
                switchboard_store::connections::find(&write.txn, &workspace, &name.conn_id).await?;
            if let Some(existing) = existing {
                return Err(ControlError::AlreadyExists(format!(
                    "connection {} already exists (conn_ids are unique ignoring case)",
                    connection_name(&existing)
                )));
            }
            let referenced: Vec<String> = excluded
                .iter()
                .chain(new_links.iter().map(|(id, _)| id))
                .cloned()
                .collect();
            require_deployments(&write.txn, &workspace, referenced.iter()).await?;
            if !links::claim_ids(&write, reserved, &staged_links).await? {
                continue;
            }
            let row = switchboard_store::connections::insert(
                &write.txn,
                reserved,
                &workspace,
                &name.conn_id,
                &spec,
                now,
            )
            .await?;
            let changed = changed_fields(&ConnectionSpec::default(), &spec);
            let saved = save_connection(
                self,
                &write,
                row,
                ConnectionState {
                    spec: &spec,
                    link_to_all: connection.link_to_all_deployments,
                    excluded: excluded.clone(),
                },
                staged,
                ConnectionWrite {
                    principal,
                    action: "CreateConnection",
                    request_id: &request_id,
                    changed,
                },
            )
            .await?;
            for ((deployment, overrides), staged_link) in new_links.iter().zip(staged_links) {
                links::insert_link(
                    self,
                    &write,
                    &saved,
                    links::NewLink {
                        deployment,
                        overrides,
                        staged: staged_link,
                    },
                    principal,
                    &request_id,
                )
                .await?;
            }
            idempotency::remember(
                &write.txn,
                &workspace,
                "CreateConnection",
                &request_id,
                &name.to_string(),
                now,
            )
            .await?;
            write.commit().await?;
            tracing::info!(connection = %connection_name(&saved), links = new_links.len(), "connection created");
            return Ok(saved);
        }
        Err(contended("connection"))
    }
}
