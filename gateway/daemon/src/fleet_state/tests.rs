use dosegate_core::envelope::Signer as _;
use dosegate_core::fleet::metadata::RevocationList;
use dosegate_core::fleet::{FLEET_FORMAT_VERSION, GatewayId};
use dosegate_provisioning::fleet::{root_chain, rotate_root, sign_policy_bundle, sign_revocation};
use dosegate_provisioning::hub::{HubHome, InitOptions, RoleShape};

use super::*;

const NOW: u64 = 1_800_000_000;
const POLICY: &str = include_str!("../../../../policies/fdm-hctz-printlet.toml");

struct Fixture {
    _dir: tempfile::TempDir,
    hub: HubHome,
    state: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hub = HubHome::init(
        &dir.path().join("hub"),
        &InitOptions {
            hub_id: "hub.test".into(),
            root: RoleShape {
                keys: 1,
                threshold: 1,
            },
            jobs: RoleShape {
                keys: 1,
                threshold: 1,
            },
            lifetime_s: 3600,
            now: NOW,
        },
    )
    .unwrap();
    let state = dir.path().join("state/fleet");
    Fixture {
        _dir: dir,
        hub,
        state,
    }
}

impl Fixture {
    fn open(&self) -> FleetState {
        FleetState::open(&self.state, self.hub.trusted_root(NOW).unwrap()).unwrap()
    }

    fn policy(&self, version: u32) -> Vec<u8> {
        let keys = self
            .hub
            .role_keys(Role::Policies, &self.hub.trusted_root(NOW).unwrap())
            .unwrap();
        let toml = POLICY.replacen("version = 1", &format!("version = {version}"), 1);
        sign_policy_bundle(&toml, &keys).unwrap().1
    }

    fn revocation(&self, version: u64, expires: u64, list: RevocationList) -> Vec<u8> {
        let keys = self
            .hub
            .role_keys(Role::Revocation, &self.hub.trusted_root(NOW).unwrap())
            .unwrap();
        sign_revocation(
            &RevocationList {
                v: FLEET_FORMAT_VERSION,
                version,
                expires,
                ..list
            },
            &keys,
        )
        .unwrap()
    }
}

#[test]
fn a_policy_update_is_applied_persisted_and_survives_a_restart() {
    let f = fixture();
    let mut state = f.open();
    let applied = state
        .apply(FleetTopic::Policies, &f.policy(2), NOW)
        .unwrap();
    assert!(matches!(applied, Applied::Policy { version: 2, .. }));
    assert!(state.policy("fdm-hctz-printlet", 2).is_some());
    assert!(state.policy("fdm-hctz-printlet", 1).is_none());
    drop(state);
    let reopened = f.open();
    let p = reopened.policy("fdm-hctz-printlet", 2).unwrap();
    assert_eq!(p.policy().unwrap().version(), 2);
}

#[test]
fn rollback_is_refused_and_a_replayed_retained_message_is_ignored() {
    let f = fixture();
    let mut state = f.open();
    let (v2, v3) = (f.policy(2), f.policy(3));
    state.apply(FleetTopic::Policies, &v3, NOW).unwrap();
    // The old retained message replayed (e.g. by an attacker on the broker): a rollback.
    let err = state.apply(FleetTopic::Policies, &v2, NOW).unwrap_err();
    assert_eq!(err.code(), "metadata-rollback");
    // The current retained message delivered again at reconnect: ignored.
    assert_eq!(
        state.apply(FleetTopic::Policies, &v3, NOW).unwrap(),
        Applied::Unchanged {
            topic: FleetTopic::Policies
        }
    );
    assert!(state.policy("fdm-hctz-printlet", 3).is_some());
}

#[test]
fn metadata_signed_by_the_wrong_role_or_on_the_wrong_topic_is_refused() {
    let f = fixture();
    let mut state = f.open();
    let jobs = f
        .hub
        .role_keys(Role::Jobs, &f.hub.trusted_root(NOW).unwrap())
        .unwrap();
    let toml = POLICY.replacen("version = 1", "version = 2", 1);
    let (_, by_jobs) = sign_policy_bundle(&toml, &jobs).unwrap();
    let err = state
        .apply(FleetTopic::Policies, &by_jobs, NOW)
        .unwrap_err();
    assert_eq!(err.code(), "metadata-unknown-signer");
    // A genuine policy bundle sent on the revocation topic.
    let err = state
        .apply(FleetTopic::Revocation, &f.policy(2), NOW)
        .unwrap_err();
    assert_eq!(err.code(), "metadata-wrong-content-type");
    assert!(state.policies().next().is_none());
}

#[test]
fn revocation_names_jobs_and_gateways_and_drops_bundles_of_a_revoked_key() {
    let f = fixture();
    let mut state = f.open();
    assert_eq!(
        state.check_revocation_current(NOW).unwrap_err().code(),
        "revocation-missing"
    );
    state
        .apply(FleetTopic::Policies, &f.policy(2), NOW)
        .unwrap();
    let policies_key = f
        .hub
        .role_keys(Role::Policies, &f.hub.trusted_root(NOW).unwrap())
        .unwrap()[0]
        .public_key()
        .key_id();
    let gw = GatewayId::new("spoke-09").unwrap();
    let list = RevocationList {
        jobs: ["spoke-01-7-abc".to_owned()].into_iter().collect(),
        keys: [policies_key].into_iter().collect(),
        gateways: [gw.clone()].into_iter().collect(),
        ..RevocationList::default()
    };
    let applied = state
        .apply(
            FleetTopic::Revocation,
            &f.revocation(1, NOW + 60, list.clone()),
            NOW,
        )
        .unwrap();
    assert_eq!(
        applied,
        Applied::Revocation {
            version: 1,
            expires: NOW + 60,
            dropped: vec!["policy fdm-hctz-printlet".into()]
        }
    );
    assert!(state.is_revoked(Revocable::Job("spoke-01-7-abc")));
    assert!(state.is_revoked(Revocable::Gateway(&gw)));
    assert!(state.is_revoked(Revocable::Key(&policies_key)));
    assert!(!state.is_revoked(Revocable::Job("spoke-01-8-def")));
    assert!(state.policy("fdm-hctz-printlet", 2).is_none());
    // The revoked key's signatures no longer count.
    let err = state
        .apply(FleetTopic::Policies, &f.policy(3), NOW)
        .unwrap_err();
    assert_eq!(err.code(), "metadata-unknown-signer");
    state.check_revocation_current(NOW).unwrap();
    assert_eq!(
        state.check_revocation_current(NOW + 60).unwrap_err().code(),
        "revocation-expired"
    );
    // An older list is a rollback; an expired one is refused outright.
    let err = state
        .apply(
            FleetTopic::Revocation,
            &f.revocation(0, NOW + 60, RevocationList::default()),
            NOW,
        )
        .unwrap_err();
    assert_eq!(err.code(), "metadata-rollback");
    let err = state
        .apply(
            FleetTopic::Revocation,
            &f.revocation(2, NOW, RevocationList::default()),
            NOW,
        )
        .unwrap_err();
    assert_eq!(err.code(), "metadata-expired");
    drop(state);
    let reopened = f.open();
    assert!(reopened.is_revoked(Revocable::Gateway(&gw)));
}

#[test]
fn a_rotated_root_is_applied_once_and_kept_across_restarts() {
    let f = fixture();
    let mut state = f.open();
    rotate_root(&f.hub, 7200, NOW).unwrap();
    rotate_root(&f.hub, 7200, NOW).unwrap();
    let chain = root_chain(f.hub.dir()).unwrap();
    let applied = state.apply(FleetTopic::Root, &chain, NOW).unwrap();
    assert!(matches!(applied, Applied::Root { version: 3, .. }));
    assert_eq!(
        state.apply(FleetTopic::Root, &chain, NOW).unwrap(),
        Applied::Unchanged {
            topic: FleetTopic::Root
        }
    );
    drop(state);
    assert_eq!(f.open().trust_root().metadata().version, 3);
}

#[test]
fn a_file_planted_in_the_state_directory_counts_for_nothing() {
    let f = fixture();
    let state = f.open();
    drop(state);
    // A policy "bundle" written by someone with disk access but no hub key.
    std::fs::create_dir_all(f.state.join("policies")).unwrap();
    let forged = {
        let other = dosegate_core::envelope::SoftwareKey::from_bytes(&[9; 32]).unwrap();
        let toml = POLICY.replacen("version = 1", "version = 9", 1);
        sign_policy_bundle(&toml, &[other]).unwrap().1
    };
    std::fs::write(f.state.join("policies/fdm-hctz-printlet.cose"), forged).unwrap();
    let state = f.open();
    assert!(state.policies().next().is_none());
}

#[test]
fn a_revoked_jobs_key_no_longer_signs_receipts_even_after_a_restart() {
    use dosegate_core::fleet::receipt::{self, ReceiptPayload};
    let f = fixture();
    let mut state = f.open();
    let root = f.hub.trusted_root(NOW).unwrap();
    let jobs_keys = f.hub.role_keys(Role::Jobs, &root).unwrap();
    let jobs_key = jobs_keys[0].public_key().key_id();
    let gw = GatewayId::new("spoke-01").unwrap();
    let signed = receipt::sign(
        &ReceiptPayload {
            v: FLEET_FORMAT_VERSION,
            gw: gw.clone(),
            seq: 3,
            hash: [9; 32],
            time: NOW * 1000,
        },
        &[&jobs_keys[0]],
    )
    .unwrap();
    assert!(receipt::verify_in_force(&signed, state.keys_in_force(), &gw).is_ok());
    let list = RevocationList {
        keys: [jobs_key].into_iter().collect(),
        ..RevocationList::default()
    };
    state
        .apply(
            FleetTopic::Revocation,
            &f.revocation(1, NOW + 60, list),
            NOW,
        )
        .unwrap();
    assert!(state.keys_in_force().keys(Role::Jobs).is_empty());
    let err = receipt::verify_in_force(&signed, state.keys_in_force(), &gw).unwrap_err();
    assert!(err.to_string().contains("key"), "{err}");
    // The owned copy the fleet link holds, and a gateway started again, agree.
    let trust = state.trust_in_force();
    assert!(receipt::verify_in_force(&signed, trust.keys(), &gw).is_err());
    let reopened = f.open();
    assert!(receipt::verify_in_force(&signed, reopened.keys_in_force(), &gw).is_err());
    // The pinned root alone would still have taken it.
    assert!(receipt::verify(&signed, &root, &gw).is_ok());
}
