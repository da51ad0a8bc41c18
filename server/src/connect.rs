//! The built-in Connect CA on the server side: bootstrap on first leadership, configuration
//! changes (rotation with cross-signing), and leaf signing.
//!
//! Key material is made on the leader and replicated through Raft ([`Command::CaInit`],
//! [`Command::CaSetConfig`]), so whichever server leads next can sign. Signing itself writes
//! nothing: the leader checks the CSR and signs with the active root from its state.
//!
//! # Layout
//! - [`ca`]: the certificate work, pure: make/take a root, cross-sign, check and sign a CSR.
//!
//! Roots rotated out are pruned by the leader ([`roots_to_prune`], [`Command::CaPruneRoots`])
//! once every leaf they could have signed has expired.

pub(crate) mod ca;
#[cfg(test)]
mod tests;

use concord_api::connect::{
    trust_domain, CaConfiguration, CaProviderConfig, IssuedCert, SignRequest, DEFAULT_NAMESPACE,
    PROVIDER_CONSUL,
};
use concord_api::rpc::{RpcError, WriteResponse, WriteResult};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::command::{now_ms, Command, UnixMillis};
use crate::model::ca::{CaConfig, CaRoot};
use crate::node::Shared;
use crate::state::schema;

impl From<ca::CaError> for RpcError {
    fn from(e: ca::CaError) -> Self {
        match e {
            ca::CaError::Internal(_) => RpcError::Internal(e.to_string()),
            _ => RpcError::Invalid(e.to_string()),
        }
    }
}

/// The `CaInit` command for a store without a CA: a new cluster ID and a generated root
/// under the default configuration. `None` if the CA already exists.
pub(crate) fn init_command(shared: &Shared) -> Result<Option<Command>, RpcError> {
    if shared.store.current().view(|t| t.ca_signer()).is_some() {
        return Ok(None);
    }
    let provider = CaProviderConfig::default();
    let cluster_id = uuid::Uuid::new_v4().to_string();
    let root = ca::generate_root(
        &trust_domain(&cluster_id),
        &provider.private_key_type,
        provider.private_key_bits,
        provider.root_cert_ttl,
        OffsetDateTime::now_utc(),
    )?;
    Ok(Some(Command::CaInit {
        config: CaConfig::new(cluster_id, &provider, false),
        root,
    }))
}

/// The `CaSetConfig` command for a configuration `PUT`, built on the leader.
///
/// Rotates when the request supplies a key and certificate that differ from the active
/// root's, or changes the key type or size: the new root is taken or generated and, unless
/// `ForceWithoutCrossSigning`, cross-signed by the active root, the cross-signed certificate
/// going into the new root's intermediates (as Consul does).
pub(crate) fn set_config_command(
    shared: &Shared,
    req: &CaConfiguration,
) -> Result<Command, RpcError> {
    if !req.provider.is_empty() && req.provider != PROVIDER_CONSUL {
        return Err(RpcError::Invalid(format!(
            "unknown CA provider {:?}: only \"consul\" is supported",
            req.provider
        )));
    }
    let provider =
        CaProviderConfig::from_map(&req.config).map_err(|e| RpcError::Invalid(e.to_string()))?;
    let (current, active) = shared
        .store
        .current()
        .view(|t| t.ca_signer())
        .ok_or_else(|| RpcError::Invalid("CA is not initialized yet".to_string()))?;
    let now = OffsetDateTime::now_utc();
    let new_root: Option<CaRoot> = if !provider.private_key.is_empty() {
        let supplied = ca::supplied_root(&provider.private_key, &provider.root_cert)?;
        (supplied.id != active.id).then_some(supplied)
    } else if provider.private_key_type != active.private_key_type
        || provider.private_key_bits != active.private_key_bits
    {
        Some(ca::generate_root(
            &trust_domain(&current.cluster_id),
            &provider.private_key_type,
            provider.private_key_bits,
            provider.root_cert_ttl,
            now,
        )?)
    } else {
        None
    };
    let new_root = match new_root {
        Some(mut root) if !req.force_without_cross_signing => {
            root.intermediate_certs = vec![ca::cross_sign(&active, &root, now)?];
            Some(root)
        }
        other => other,
    };
    // The key type and size recorded are the active root's, so a later PUT that repeats
    // them does not rotate again.
    let mut config = CaConfig::new(
        current.cluster_id.clone(),
        &provider,
        req.force_without_cross_signing,
    );
    if let Some(root) = new_root.as_ref() {
        config.private_key_type = root.private_key_type.clone();
        config.private_key_bits = root.private_key_bits;
    }
    Ok(Command::CaSetConfig {
        config,
        new_root,
        prev_active_root: active.id,
        now_ms: Some(now_ms()),
    })
}

/// The inactive roots no leaf can still need, as of `now_ms` (Consul's `pruneCARoots`): a
/// leaf lives at most `LeafCertTTL`, so once a root has been rotated out for twice that,
/// nothing it signed is valid any more (the factor two covers a TTL shortened since, and
/// clock skew). A root rotated out before rotation times were recorded is pruned once it has
/// itself expired, since no leaf outlives its root. The active root is never pruned.
pub(crate) fn roots_to_prune(
    config: &CaConfig,
    roots: &[CaRoot],
    now_ms: UnixMillis,
) -> Vec<String> {
    let grace = config.leaf_cert_ttl_ms.saturating_mul(2);
    let now = i128::from(now_ms) * 1_000_000;
    roots
        .iter()
        .filter(|r| !r.active)
        .filter(|r| {
            let rotated_long_ago = r
                .rotated_out_at_ms
                .is_some_and(|at| now_ms.saturating_sub(at) > grace);
            let expired = OffsetDateTime::parse(&r.not_after, &Rfc3339)
                .is_ok_and(|t| t.unix_timestamp_nanos() < now);
            rotated_long_ago || expired
        })
        .map(|r| r.id.clone())
        .collect()
}

/// The `CaPruneRoots` command for what [`roots_to_prune`] finds in the state, if anything.
pub(crate) fn prune_command(shared: &Shared, now_ms: UnixMillis) -> Option<Command> {
    let ids = shared.store.current().view(|t| {
        let config = t.ca_signer()?.0;
        Some(roots_to_prune(&config, t.ca_roots(), now_ms))
    })?;
    (!ids.is_empty()).then_some(Command::CaPruneRoots { ids })
}

/// Signs an agent's CSR with the active root. The reply's indexes are the roots table's, the
/// key PEM is empty (the agent made the key and keeps it).
pub(crate) fn sign(shared: &Shared, req: &SignRequest) -> Result<WriteResponse, RpcError> {
    let store = shared.store.current();
    let (signer, index) = store.view(|t| (t.ca_signer(), t.table_index(schema::CA_ROOTS)));
    let (config, root) =
        signer.ok_or_else(|| RpcError::Invalid("CA is not initialized yet".to_string()))?;
    let leaf = ca::sign_leaf(
        &root,
        &trust_domain(&config.cluster_id),
        &shared.config.datacenter,
        &req.service,
        &req.csr_pem,
        config.leaf_cert_ttl(),
        OffsetDateTime::now_utc(),
    )?;
    let index = index.max(1);
    Ok(WriteResponse {
        index,
        result: WriteResult::CaLeaf(IssuedCert {
            serial_number: leaf.serial_hex,
            cert_pem: leaf.cert_pem,
            private_key_pem: String::new(),
            service: req.service.clone(),
            service_uri: leaf.uri,
            valid_after: leaf.valid_after,
            valid_before: leaf.valid_before,
            namespace: DEFAULT_NAMESPACE.to_string(),
            create_index: index,
            modify_index: index,
        }),
    })
}
