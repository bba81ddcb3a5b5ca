use std::collections::BTreeMap;

use super::*;
use crate::envelope::{Signer, SoftwareKey};
use crate::trust::{RoleSpec, Roles, TrustRoot};

const NOW: u64 = 1_800_000_000;

fn key(n: u8) -> SoftwareKey {
    let mut secret = [0u8; 32];
    secret[0] = 0x33;
    secret[31] = n;
    SoftwareKey::from_bytes(&secret).unwrap()
}

/// The hub's keys: root, jobs, policies, models, revocation (one each, threshold 1), and a
/// second policies key for the revocation tests.
struct Hub {
    root: SoftwareKey,
    jobs: SoftwareKey,
    policies: SoftwareKey,
    models: SoftwareKey,
    revocation: SoftwareKey,
}

fn hub(base: u8) -> Hub {
    Hub {
        root: key(base),
        jobs: key(base + 1),
        policies: key(base + 2),
        models: key(base + 3),
        revocation: key(base + 4),
    }
}

fn spec(k: &SoftwareKey) -> RoleSpec {
    RoleSpec {
        keyids: vec![k.public_key().key_id()],
        threshold: 1,
    }
}

fn root_payload(version: u64, h: &Hub) -> TrustRoot {
    let mut keys = BTreeMap::new();
    for k in [&h.root, &h.jobs, &h.policies, &h.models, &h.revocation] {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    TrustRoot {
        keys,
        roles: Roles {
            jobs: spec(&h.jobs),
            root: spec(&h.root),
            models: spec(&h.models),
            policies: spec(&h.policies),
            revocation: spec(&h.revocation),
        },
        hub_id: "hub.test".into(),
        expires: 2_000_000_000,
        version,
    }
}

fn sign(kind: ContentType, payload: &[u8], signers: &[&SoftwareKey]) -> Vec<u8> {
    let signers: Vec<&dyn Signer> = signers.iter().map(|k| *k as &dyn Signer).collect();
    envelope::sign(kind, payload, &signers).unwrap()
}

fn root_bytes(version: u64, h: &Hub, signers: &[&SoftwareKey]) -> Vec<u8> {
    sign(
        ContentType::TrustRoot,
        &root_payload(version, h).to_cbor().unwrap(),
        signers,
    )
}

fn pinned(h: &Hub) -> TrustedRoot {
    TrustedRoot::pin(&root_bytes(1, h, &[&h.root]), NOW).unwrap()
}

fn policy_toml(version: u32) -> String {
    let text = include_str!("../../../../../policies/fdm-hctz-printlet.toml");
    text.replacen("version = 1", &format!("version = {version}"), 1)
}

fn policy_bundle(id: &str, version: u32, toml: &str, signer: &SoftwareKey) -> Vec<u8> {
    let bundle = PolicyBundle {
        v: FLEET_FORMAT_VERSION,
        id: id.into(),
        toml: toml.as_bytes().to_vec(),
        sha256: Sha256::digest(toml.as_bytes()).into(),
        version,
    };
    sign(
        ContentType::Policy,
        &cbor::to_vec(&bundle).unwrap(),
        &[signer],
    )
}

fn no_revocations() -> BTreeSet<KeyId> {
    BTreeSet::new()
}

#[test]
fn a_root_chain_walks_every_rotation_and_skips_what_is_in_force() {
    let (h1, h2, h3) = (hub(1), hub(11), hub(21));
    let current = pinned(&h1);
    let v2 = root_bytes(2, &h2, &[&h1.root, &h2.root]);
    let v3 = root_bytes(3, &h3, &[&h2.root, &h3.root]);
    let chain = encode_root_chain(&[v2.clone(), v3.clone()]).unwrap();
    let roots = verify_root_chain(&chain, &current, NOW).unwrap();
    assert_eq!(
        roots
            .iter()
            .map(|r| r.metadata().version)
            .collect::<Vec<_>>(),
        [2, 3]
    );
    // Seen again from v3: nothing new.
    assert!(
        verify_root_chain(&chain, &roots[1], NOW)
            .unwrap()
            .is_empty()
    );
    // A v3 not signed by v2's root keys is refused even at the end of a valid chain.
    let forged = root_bytes(3, &h3, &[&h3.root]);
    let chain = encode_root_chain(&[v2, forged]).unwrap();
    let err = verify_root_chain(&chain, &current, NOW).unwrap_err();
    assert_eq!(err.code(), "metadata-bad-root");
    // A gap (v3 straight after v1) is refused: each step must be the next version.
    let chain = encode_root_chain(&[v3]).unwrap();
    assert!(matches!(
        verify_root_chain(&chain, &current, NOW),
        Err(MetadataError::Root(_))
    ));
}

#[test]
fn a_policy_bundle_verifies_only_under_the_policies_role() {
    let h = hub(1);
    let root = pinned(&h);
    let revoked = no_revocations();
    let keys = RoleKeysInForce {
        root: &root,
        revoked: &revoked,
    };
    let toml = policy_toml(2);
    let ok = verify_policy_bundle(
        &policy_bundle("fdm-hctz-printlet", 2, &toml, &h.policies),
        &keys,
    )
    .unwrap();
    assert_eq!((ok.id(), ok.version()), ("fdm-hctz-printlet", 2));
    assert_eq!(ok.policy().unwrap().version(), 2);
    // Signed by the jobs key (another role): refused.
    let err = verify_policy_bundle(
        &policy_bundle("fdm-hctz-printlet", 2, &toml, &h.jobs),
        &keys,
    )
    .unwrap_err();
    assert_eq!(err.code(), "metadata-unknown-signer");
    // The bundle claims v3 of a TOML that says v2.
    let err = verify_policy_bundle(
        &policy_bundle("fdm-hctz-printlet", 3, &toml, &h.policies),
        &keys,
    )
    .unwrap_err();
    assert_eq!(err.code(), "metadata-inconsistent");
    // A bundle envelope presented as a model: the content type is bound in.
    assert!(
        verify_model_bundle(
            &policy_bundle("fdm-hctz-printlet", 2, &toml, &h.policies),
            &keys
        )
        .is_err()
    );
}

#[test]
fn a_policy_bundle_whose_hash_lies_is_refused() {
    let h = hub(1);
    let root = pinned(&h);
    let revoked = no_revocations();
    let keys = RoleKeysInForce {
        root: &root,
        revoked: &revoked,
    };
    let toml = policy_toml(2);
    let bundle = PolicyBundle {
        v: FLEET_FORMAT_VERSION,
        id: "fdm-hctz-printlet".into(),
        toml: toml.as_bytes().to_vec(),
        sha256: [0; 32],
        version: 2,
    };
    let bytes = sign(
        ContentType::Policy,
        &cbor::to_vec(&bundle).unwrap(),
        &[&h.policies],
    );
    assert_eq!(
        verify_policy_bundle(&bytes, &keys).unwrap_err().code(),
        "metadata-hash-mismatch"
    );
}

#[test]
fn a_revoked_key_no_longer_counts_for_its_role() {
    let h = hub(1);
    let root = pinned(&h);
    let revoked: BTreeSet<KeyId> = [h.policies.public_key().key_id()].into_iter().collect();
    let keys = RoleKeysInForce {
        root: &root,
        revoked: &revoked,
    };
    let bytes = policy_bundle("fdm-hctz-printlet", 2, &policy_toml(2), &h.policies);
    assert_eq!(
        verify_policy_bundle(&bytes, &keys).unwrap_err().code(),
        "metadata-unknown-signer"
    );
}

#[test]
fn a_model_bundle_verifies_under_the_models_role() {
    let h = hub(1);
    let root = pinned(&h);
    let revoked = no_revocations();
    let keys = RoleKeysInForce {
        root: &root,
        revoked: &revoked,
    };
    let model = include_bytes!("../../../../../models/nir-dyrby2002.cbor").to_vec();
    let id = ValidatedModel::from_bytes(&model).unwrap().id().clone();
    let bundle = |signer: &SoftwareKey, version: u32| {
        let b = ModelBundle {
            v: FLEET_FORMAT_VERSION,
            id: id.id.clone(),
            model: model.clone(),
            sha256: Sha256::digest(&model).into(),
            version,
        };
        sign(ContentType::Model, &cbor::to_vec(&b).unwrap(), &[signer])
    };
    let ok = verify_model_bundle(&bundle(&h.models, id.version), &keys).unwrap();
    assert_eq!(ok.bytes(), model.as_slice());
    assert_eq!(
        verify_model_bundle(&bundle(&h.policies, id.version), &keys)
            .unwrap_err()
            .code(),
        "metadata-unknown-signer"
    );
    assert_eq!(
        verify_model_bundle(&bundle(&h.models, id.version + 1), &keys)
            .unwrap_err()
            .code(),
        "metadata-inconsistent"
    );
}

#[test]
fn a_revocation_list_verifies_until_it_expires() {
    let h = hub(1);
    let root = pinned(&h);
    let revoked = no_revocations();
    let keys = RoleKeysInForce {
        root: &root,
        revoked: &revoked,
    };
    let list = RevocationList {
        v: FLEET_FORMAT_VERSION,
        jobs: ["spoke-01-7-abc".to_owned()].into_iter().collect(),
        keys: [h.jobs.public_key().key_id()].into_iter().collect(),
        expires: NOW + 3600,
        version: 4,
        gateways: [GatewayId::new("spoke-09").unwrap()].into_iter().collect(),
    };
    let payload = cbor::to_vec(&list).unwrap();
    let value: ciborium::Value = ciborium::from_reader(&payload[..]).unwrap();
    assert!(cbor::is_deterministic_value(&value));
    let bytes = sign(ContentType::Revocation, &payload, &[&h.revocation]);
    let ok = verify_revocation(&bytes, &keys, NOW).unwrap();
    assert_eq!(ok.list(), &list);
    assert_eq!(
        verify_revocation(&bytes, &keys, NOW + 3600)
            .unwrap_err()
            .code(),
        "metadata-expired"
    );
    let by_policies = sign(ContentType::Revocation, &payload, &[&h.policies]);
    assert_eq!(
        verify_revocation(&by_policies, &keys, NOW)
            .unwrap_err()
            .code(),
        "metadata-unknown-signer"
    );
}

#[test]
fn versions_only_go_up_and_a_retained_replay_is_recognised() {
    let (a, b) = ([1; 32], [2; 32]);
    assert_eq!(freshness(None, (1, a)), Freshness::Newer);
    assert_eq!(freshness(Some((1, a)), (2, b)), Freshness::Newer);
    assert_eq!(freshness(Some((2, b)), (2, b)), Freshness::Replay);
    assert_eq!(freshness(Some((2, b)), (2, a)), Freshness::Equivocation);
    assert_eq!(freshness(Some((2, b)), (1, a)), Freshness::Rollback);
}

#[test]
fn bundle_field_orders_are_deterministic() {
    let toml = policy_toml(2);
    let bundle = PolicyBundle {
        v: 1,
        id: "x".into(),
        toml: toml.into_bytes(),
        sha256: [0; 32],
        version: 2,
    };
    let bytes = cbor::to_vec(&bundle).unwrap();
    let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    assert!(cbor::is_deterministic_value(&value));
    let model = ModelBundle {
        v: 1,
        id: "x".into(),
        model: vec![1],
        sha256: [0; 32],
        version: 2,
    };
    let bytes = cbor::to_vec(&model).unwrap();
    let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    assert!(cbor::is_deterministic_value(&value));
}
