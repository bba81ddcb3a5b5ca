//! The TPM adapter: the only module that talks to the TPM (through tss-esapi).
//!
//! It owns one ESAPI context behind a lock, with one HMAC session salted to the storage root key
//! (SRK) and parameter encryption, reused for every command (against bus interposers). At
//! [`Tpm::open`] it loads, or on first use creates and persists, the SRK (ECC P-256 primary), the
//! attestation key (AK: restricted ECDSA P-256 signing key), the event-signing key and the mTLS
//! client key (both unrestricted ECDSA P-256, never exported), and an NV counter; so identity and counter survive restarts. It reads the EK
//! (ECC P-256, low-range template), extends measurements into the application PCR while keeping
//! our own event log, quotes that PCR with a nonce, bumps the counter, and seals secrets to the
//! PCR's current value (unseal fails once the PCR moves).
//!
//! It does not decide anything: the ledger format, quote verification and event-log replay are in
//! `dosegate_core`. It implements the core's `Signer` and `Quoter` and the ledger's `GatewayKeys`,
//! so with no TPM there is no signer and nothing can be released (fail closed).

use std::str::FromStr as _;
use std::sync::{Arc, Mutex, MutexGuard};

use dosegate_core::attest::{Component, EventLog, Measurement};
use dosegate_core::envelope::{PublicKey, SignError, Signer};
use dosegate_core::ledger::{QuoteEvidence, Quoter};
use sha2::{Digest as _, Sha256};
use tss_esapi::Context;
use tss_esapi::attributes::{
    NvIndexAttributesBuilder, ObjectAttributesBuilder, SessionAttributesBuilder,
};
use tss_esapi::constants::nv_index_type::NvIndexType;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::constants::{CapabilityType, SessionType};
use tss_esapi::handles::{
    AuthHandle, KeyHandle, NvIndexHandle, NvIndexTpmHandle, ObjectHandle, PcrHandle,
    PersistentTpmHandle, SessionHandle, TpmHandle,
};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, NvAuth, Provision};
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    CapabilityData, Data, Digest, DigestValues, EccPoint, EccScheme, EncryptedSecret, HashScheme,
    HashcheckTicket, IdObject, KeyedHashScheme, Nonce, NvPublicBuilder, PcrSelectionList,
    PcrSelectionListBuilder, PcrSlot, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyedHashParameters, SensitiveData, Signature, SignatureScheme, SymmetricDefinition,
    SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall as _;
use tss_esapi::tss2_esys::{TPM2B_DIGEST, TPMT_TK_HASHCHECK};

/// Where our objects live in the TPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handles {
    /// Persistent handle of the storage root key.
    pub srk: u32,
    /// Persistent handle of the attestation key.
    pub ak: u32,
    /// Persistent handle of the event-signing key.
    pub event_key: u32,
    /// Persistent handle of the mTLS client key.
    pub tls_key: u32,
    /// NV index of the ledger counter.
    pub counter: u32,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            srk: 0x8100_0100,
            ak: 0x8100_0101,
            event_key: 0x8100_0102,
            tls_key: 0x8100_0103,
            counter: 0x0150_0100,
        }
    }
}

/// How to reach and use the TPM.
#[derive(Debug, Clone)]
pub struct TpmConfig {
    /// The TCTI: `device:/dev/tpmrm0` on the appliance, `swtpm:host=127.0.0.1,port=P` in tests.
    pub tcti: String,
    /// The application PCR (15 in production; the supported choices are 15, 16 and 23).
    pub app_pcr: u8,
    /// Object handles.
    pub handles: Handles,
}

/// What went wrong with the TPM.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// The TCTI string is invalid or the TPM cannot be reached.
    #[error("cannot reach the TPM at {tcti:?}: {source}")]
    Connect {
        /// The TCTI tried.
        tcti: String,
        /// The TSS error.
        #[source]
        source: tss_esapi::Error,
    },
    /// A TPM command failed.
    #[error("TPM {op} failed: {source}")]
    Command {
        /// Which operation.
        op: &'static str,
        /// The TSS error (carries the TPM response code).
        #[source]
        source: tss_esapi::Error,
    },
    /// Unsealing was refused: the PCR no longer holds the value the secret was sealed to.
    #[error("unseal refused by the TPM: the PCR policy does not match ({source})")]
    PolicyRefused {
        /// The TSS error (TPM_RC_POLICY_FAIL).
        #[source]
        source: tss_esapi::Error,
    },
    /// The application PCR is not one this adapter supports.
    #[error("PCR {0} is not supported as the application PCR (use 15, 16 or 23)")]
    UnsupportedPcr(u8),
    /// The TPM returned a key or signature of an unexpected kind.
    #[error("unexpected {what} from the TPM")]
    Unexpected {
        /// What it was.
        what: &'static str,
    },
    /// The stored event log does not replay to the PCR value: measurements happened that the log
    /// does not record. Fail closed until the TPM is reset (reboot).
    #[error(
        "event log replays to {} but PCR {pcr} holds {}",
        hex::encode(log),
        hex::encode(pcr_value)
    )]
    LogMismatch {
        /// The PCR.
        pcr: u8,
        /// What the log replays to.
        log: [u8; 32],
        /// What the PCR holds.
        pcr_value: [u8; 32],
    },
    /// The counter went backwards or did not move (another TPM, or a cleared one).
    #[error("TPM counter reads {found}, expected more than {current}")]
    CounterRollback {
        /// The ledger's counter.
        current: u64,
        /// The TPM's counter.
        found: u64,
    },
    /// A previous holder of the lock panicked.
    #[error("TPM context lock poisoned")]
    Poisoned,
}

fn cmd(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Command { op, source }
}

/// A secret sealed to the application PCR's value at sealing time.
#[derive(Debug, Clone)]
pub struct SealedSecret {
    private: Private,
    public: Public,
}

struct Inner {
    ctx: Context,
    session: AuthSession,
    srk: KeyHandle,
    ak: KeyHandle,
    event_key: KeyHandle,
    tls_key: KeyHandle,
    counter: NvIndexHandle,
}

/// The gateway's TPM.
pub struct Tpm {
    inner: Mutex<Inner>,
    ak_public: PublicKey,
    event_public: PublicKey,
    tls_public: PublicKey,
    app_pcr: u8,
    pcr_handle: PcrHandle,
    pcr_slot: PcrSlot,
    log: Mutex<EventLog>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm")
            .field("ak", &self.ak_public)
            .field("event_key", &self.event_public)
            .field("app_pcr", &self.app_pcr)
            .finish_non_exhaustive()
    }
}

fn pcr_ids(pcr: u8) -> Result<(PcrHandle, PcrSlot), TpmError> {
    match pcr {
        15 => Ok((PcrHandle::Pcr15, PcrSlot::Slot15)),
        16 => Ok((PcrHandle::Pcr16, PcrSlot::Slot16)),
        23 => Ok((PcrHandle::Pcr23, PcrSlot::Slot23)),
        other => Err(TpmError::UnsupportedPcr(other)),
    }
}

fn srk_template() -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_decrypt(true)
        .with_no_da(true)
        .build()
        .map_err(cmd("build SRK attributes"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(
            PublicEccParametersBuilder::new_restricted_decryption_key(
                SymmetricDefinitionObject::AES_128_CFB,
                EccCurve::NistP256,
            )
            .build()
            .map_err(cmd("build SRK parameters"))?,
        )
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(cmd("build SRK template"))
}

fn signing_template(restricted: bool) -> Result<Public, TpmError> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_restricted(restricted)
        .build()
        .map_err(cmd("build key attributes"))?;
    let scheme = EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256));
    let mut params =
        PublicEccParametersBuilder::new_unrestricted_signing_key(scheme, EccCurve::NistP256);
    if restricted {
        params = params.with_restricted(true);
    }
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(params.build().map_err(cmd("build key parameters"))?)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(cmd("build key template"))
}

fn sec1_of(public: &Public) -> Result<PublicKey, TpmError> {
    let Public::Ecc { unique, .. } = public else {
        return Err(TpmError::Unexpected {
            what: "non-ECC key",
        });
    };
    let mut sec1 = vec![4u8];
    for coord in [unique.x().value(), unique.y().value()] {
        if coord.len() > 32 {
            return Err(TpmError::Unexpected {
                what: "oversized ECC coordinate",
            });
        }
        sec1.extend(std::iter::repeat_n(0, 32 - coord.len()));
        sec1.extend_from_slice(coord);
    }
    PublicKey::from_sec1(&sec1).map_err(|_| TpmError::Unexpected {
        what: "invalid P-256 point",
    })
}

/// Converts a TPM ECDSA signature to 64-byte r‖s with low S.
fn rs_of(signature: &Signature) -> Result<[u8; 64], TpmError> {
    let Signature::EcDsa(sig) = signature else {
        return Err(TpmError::Unexpected {
            what: "non-ECDSA signature",
        });
    };
    let mut out = [0u8; 64];
    for (half, value) in [
        (0usize, sig.signature_r().value()),
        (32, sig.signature_s().value()),
    ] {
        if value.len() > 32 {
            return Err(TpmError::Unexpected {
                what: "oversized signature scalar",
            });
        }
        let start = half + 32 - value.len();
        out.get_mut(start..half + 32)
            .ok_or(TpmError::Unexpected {
                what: "signature layout",
            })?
            .copy_from_slice(value);
    }
    let parsed = p256::ecdsa::Signature::from_slice(&out).map_err(|_| TpmError::Unexpected {
        what: "invalid ECDSA signature",
    })?;
    let parsed = parsed.normalize_s().unwrap_or(parsed);
    Ok(parsed.to_bytes().into())
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: a session left open is reclaimed by the TPM at the next reset anyway.
        let _ = self
            .ctx
            .flush_context(ObjectHandle::from(SessionHandle::from(self.session)));
    }
}

impl Inner {
    /// Loads a persistent object, or creates it with `create` and persists it.
    fn persistent(
        &mut self,
        handle: u32,
        create: impl FnOnce(&mut Context) -> Result<KeyHandle, TpmError>,
    ) -> Result<KeyHandle, TpmError> {
        let tpm_handle = PersistentTpmHandle::new(handle).map_err(cmd("persistent handle"))?;
        if handle_exists(&mut self.ctx, handle) {
            let object = self
                .ctx
                .execute_without_session(|ctx| {
                    ctx.tr_from_tpm_public(TpmHandle::Persistent(tpm_handle))
                })
                .map_err(cmd("open persistent key"))?;
            return Ok(KeyHandle::from(object));
        }
        let transient = create(&mut self.ctx)?;
        let persisted = self
            .ctx
            .evict_control(
                Provision::Owner,
                ObjectHandle::from(transient),
                Persistent::Persistent(tpm_handle),
            )
            .map_err(cmd("persist object"))?;
        self.ctx
            .flush_context(ObjectHandle::from(transient))
            .map_err(cmd("flush transient object"))?;
        Ok(KeyHandle::from(persisted))
    }
}

impl Tpm {
    /// Connects, sets up the salted session, and loads or creates the keys and counter.
    pub fn open(config: &TpmConfig) -> Result<Self, TpmError> {
        let (pcr_handle, pcr_slot) = pcr_ids(config.app_pcr)?;
        let tcti = TctiNameConf::from_str(&config.tcti).map_err(|source| TpmError::Connect {
            tcti: config.tcti.clone(),
            source,
        })?;
        let mut ctx = Context::new(tcti).map_err(|source| TpmError::Connect {
            tcti: config.tcti.clone(),
            source,
        })?;
        let h = config.handles;

        let srk = open_srk(&mut ctx, h.srk)?;
        let session = ctx
            .start_auth_session(
                Some(srk),
                None,
                None,
                SessionType::Hmac,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(cmd("start salted session"))?
            .ok_or(TpmError::Unexpected {
                what: "missing session",
            })?;
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_decrypt(true)
            .with_encrypt(true)
            .with_continue_session(true)
            .build();
        ctx.tr_sess_set_attributes(session, attributes, mask)
            .map_err(cmd("set session attributes"))?;
        ctx.set_sessions((Some(session), None, None));

        let mut inner = Inner {
            ctx,
            session,
            srk,
            ak: srk,
            event_key: srk,
            tls_key: srk,
            counter: NvIndexHandle::from(ObjectHandle::Null),
        };
        let child = |template: Public, what: &'static str| {
            move |ctx: &mut Context| -> Result<KeyHandle, TpmError> {
                let created = ctx
                    .create(srk, template, None, None, None, None)
                    .map_err(cmd(what))?;
                ctx.load(srk, created.out_private, created.out_public)
                    .map_err(cmd("load key"))
            }
        };
        inner.ak = inner.persistent(h.ak, child(signing_template(true)?, "create AK"))?;
        inner.event_key = inner.persistent(
            h.event_key,
            child(signing_template(false)?, "create event key"),
        )?;
        inner.tls_key = inner.persistent(
            h.tls_key,
            child(signing_template(false)?, "create TLS client key"),
        )?;
        inner.counter = open_counter(&mut inner.ctx, h.counter)?;

        let (ak_pub, _, _) = inner.ctx.read_public(inner.ak).map_err(cmd("read AK"))?;
        let (ev_pub, _, _) = inner
            .ctx
            .read_public(inner.event_key)
            .map_err(cmd("read event key"))?;
        let (tls_pub, _, _) = inner
            .ctx
            .read_public(inner.tls_key)
            .map_err(cmd("read TLS client key"))?;
        let tpm = Self {
            ak_public: sec1_of(&ak_pub)?,
            event_public: sec1_of(&ev_pub)?,
            tls_public: sec1_of(&tls_pub)?,
            inner: Mutex::new(inner),
            app_pcr: config.app_pcr,
            pcr_handle,
            pcr_slot,
            log: Mutex::new(EventLog::default()),
        };
        tracing::info!(
            ak = %tpm.ak_public.key_id(),
            event_key = %tpm.event_public.key_id(),
            tls_key = %tpm.tls_public.key_id(),
            app_pcr = config.app_pcr,
            "TPM identity loaded"
        );
        Ok(tpm)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, TpmError> {
        self.inner.lock().map_err(|_| TpmError::Poisoned)
    }

    /// The attestation key.
    pub fn ak_public(&self) -> PublicKey {
        self.ak_public.clone()
    }

    /// The event-signing key.
    pub fn event_public(&self) -> PublicKey {
        self.event_public.clone()
    }

    /// The mTLS client key (its certificate is issued by the hub at enrollment).
    pub fn tls_public(&self) -> PublicKey {
        self.tls_public.clone()
    }

    /// The mTLS client key as a signer for `mqtt::SignerKey` / `mqtt::tls_config`: SHA-256 in
    /// software, `TPM2_Sign` over the digest with the TLS key (never the event key or AK).
    ///
    /// The signature is computed synchronously inside the TLS handshake: on a real chip that is
    /// 100–600 ms on the thread that polls the connection, once per connection (resumption is
    /// off).
    pub fn tls_signer(self: &Arc<Self>) -> Arc<dyn Signer + Send + Sync> {
        Arc::new(TpmTlsKey(Arc::clone(self)))
    }

    /// The endorsement key (ECC P-256, TCG low-range template), re-derived and flushed.
    pub fn ek_public(&self) -> Result<PublicKey, TpmError> {
        let mut inner = self.lock()?;
        let ek = tss_esapi::abstraction::ek::create_ek_object_2(
            &mut inner.ctx,
            tss_esapi::abstraction::AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            None,
        )
        .map_err(cmd("create EK"))?;
        let public = inner.ctx.read_public(ek).map_err(cmd("read EK"));
        inner
            .ctx
            .flush_context(ObjectHandle::from(ek))
            .map_err(cmd("flush EK"))?;
        sec1_of(&public?.0)
    }

    /// The AK's public area (marshalled `TPMT_PUBLIC`), for the hub's attribute checks and name.
    pub fn ak_public_area(&self) -> Result<Vec<u8>, TpmError> {
        let mut inner = self.lock()?;
        let ak = inner.ak;
        let (public, _, _) = inner.ctx.read_public(ak).map_err(cmd("read AK"))?;
        public.marshall().map_err(cmd("marshal AK public"))
    }

    /// `TPM2_ActivateCredential`: recovers the credential the hub wrapped to our EK for our AK's
    /// name. The EK's policy (PolicySecret with the endorsement hierarchy) is satisfied in a
    /// policy session salted to the SRK.
    pub fn activate_credential(
        &self,
        id_object: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError> {
        let blob = IdObject::try_from(id_object.to_vec()).map_err(cmd("credential blob"))?;
        let secret = EncryptedSecret::try_from(encrypted_secret.to_vec())
            .map_err(cmd("encrypted secret"))?;
        let mut inner = self.lock()?;
        let ek = tss_esapi::abstraction::ek::create_ek_object_2(
            &mut inner.ctx,
            tss_esapi::abstraction::AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
            None,
        )
        .map_err(cmd("create EK"))?;
        let policy = Self::policy_session(&mut inner, SessionType::Policy, false)?;
        let hmac = inner.session;
        let ak = inner.ak;
        let result = inner
            .ctx
            .execute_with_session(Some(hmac), |c| {
                c.policy_secret(
                    policy,
                    AuthHandle::Endorsement,
                    Nonce::default(),
                    Digest::default(),
                    Nonce::default(),
                    None,
                )
            })
            .map_err(cmd("policy secret (endorsement)"))
            .and_then(|_| {
                inner
                    .ctx
                    .execute_with_sessions(
                        (Some(hmac), Some(AuthSession::from(policy)), None),
                        |c| c.activate_credential(ak, ek, blob, secret),
                    )
                    .map_err(cmd("activate credential"))
            });
        let _ = inner
            .ctx
            .flush_context(ObjectHandle::from(SessionHandle::from(AuthSession::from(
                policy,
            ))));
        let _ = inner.ctx.flush_context(ObjectHandle::from(ek));
        Ok(result?.value().to_vec())
    }

    fn selection(&self) -> Result<PcrSelectionList, TpmError> {
        PcrSelectionListBuilder::new()
            .with_selection(HashingAlgorithm::Sha256, &[self.pcr_slot])
            .build()
            .map_err(cmd("build PCR selection"))
    }

    /// The application PCR's current value.
    pub fn read_pcr(&self) -> Result<[u8; 32], TpmError> {
        let selection = self.selection()?;
        let mut inner = self.lock()?;
        // PCR_Read takes no authorisation and has no sized first parameter to encrypt.
        let (_, _, digests) = inner
            .ctx
            .execute_without_session(|c| c.pcr_read(selection))
            .map_err(cmd("read PCR"))?;
        let value = digests.value().first().ok_or(TpmError::Unexpected {
            what: "empty PCR read",
        })?;
        value.value().try_into().map_err(|_| TpmError::Unexpected {
            what: "PCR value of the wrong size",
        })
    }

    /// Takes over the event log kept across daemon restarts. The log must replay to the PCR's
    /// value; a last entry that was logged but never extended (crash in between) is dropped; a
    /// PCR at zero (TPM reset) starts a fresh log. Anything else fails closed.
    pub fn adopt_log(&self, stored: EventLog) -> Result<EventLog, TpmError> {
        let pcr_value = self.read_pcr()?;
        let replay = |log: &EventLog| log.replay(self.app_pcr).ok();
        let adopted = if replay(&stored) == Some(pcr_value) {
            stored
        } else if pcr_value == [0; 32] {
            EventLog::default()
        } else {
            let mut trimmed = stored.clone();
            trimmed.0.pop();
            if !stored.0.is_empty() && replay(&trimmed) == Some(pcr_value) {
                trimmed
            } else {
                return Err(TpmError::LogMismatch {
                    pcr: self.app_pcr,
                    log: replay(&stored).unwrap_or_default(),
                    pcr_value,
                });
            }
        };
        *self.log.lock().map_err(|_| TpmError::Poisoned)? = adopted.clone();
        Ok(adopted)
    }

    /// The measurement `measure` would append, for the caller to persist before extending.
    pub fn measurement(&self, what: Component, bytes: &[u8]) -> Measurement {
        Measurement {
            pcr: self.app_pcr,
            what,
            digest: Sha256::digest(bytes).into(),
        }
    }

    /// Extends the application PCR with a measurement and appends it to the event log.
    pub fn extend(&self, measurement: &Measurement) -> Result<(), TpmError> {
        if measurement.pcr != self.app_pcr {
            return Err(TpmError::UnsupportedPcr(measurement.pcr));
        }
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(measurement.digest.to_vec()).map_err(cmd("digest"))?,
        );
        self.lock()?
            .ctx
            .pcr_extend(self.pcr_handle, values)
            .map_err(cmd("extend PCR"))?;
        self.log
            .lock()
            .map_err(|_| TpmError::Poisoned)?
            .0
            .push(measurement.clone());
        Ok(())
    }

    /// The event log of the application PCR.
    pub fn log(&self) -> EventLog {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Quotes the application PCR with `nonce` (at most 64 bytes) as qualifying data.
    pub fn quote_pcr(&self, nonce: &[u8]) -> Result<QuoteEvidence, TpmError> {
        let selection = self.selection()?;
        let data = Data::try_from(nonce.to_vec()).map_err(cmd("quote nonce"))?;
        let mut inner = self.lock()?;
        let ak = inner.ak;
        let (attest, signature) = inner
            .ctx
            .quote(ak, data, SignatureScheme::Null, selection)
            .map_err(cmd("quote"))?;
        Ok(QuoteEvidence {
            sig: rs_of(&signature)?.to_vec(),
            attest: attest.marshall().map_err(cmd("marshal attestation"))?,
        })
    }

    /// Signs a SHA-256 digest with one of our unrestricted keys.
    fn sign_digest(&self, which: SigningKeyKind, digest: [u8; 32]) -> Result<[u8; 64], TpmError> {
        let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: TPM2B_DIGEST::default(),
        })
        .map_err(cmd("hashcheck ticket"))?;
        let digest = Digest::try_from(digest.to_vec()).map_err(cmd("digest"))?;
        let mut inner = self.lock()?;
        let key = match which {
            SigningKeyKind::Event => inner.event_key,
            SigningKeyKind::Tls => inner.tls_key,
        };
        let signature = inner
            .ctx
            .sign(key, digest, SignatureScheme::Null, validation)
            .map_err(cmd("sign"))?;
        rs_of(&signature)
    }

    /// Increments the NV counter and returns its new value.
    pub fn increment_counter(&self) -> Result<u64, TpmError> {
        let mut inner = self.lock()?;
        let counter = inner.counter;
        inner
            .ctx
            .nv_increment(NvAuth::Owner, counter)
            .map_err(cmd("increment counter"))?;
        read_counter(&mut inner.ctx, counter)
    }

    /// Reads the NV counter.
    pub fn counter(&self) -> Result<u64, TpmError> {
        let mut inner = self.lock()?;
        let counter = inner.counter;
        read_counter(&mut inner.ctx, counter)
    }

    fn policy_session(
        inner: &mut Inner,
        kind: SessionType,
        encrypt: bool,
    ) -> Result<PolicySession, TpmError> {
        let srk = inner.srk;
        let session = inner
            .ctx
            .execute_without_session(|c| {
                c.start_auth_session(
                    Some(srk),
                    None,
                    None,
                    kind,
                    SymmetricDefinition::AES_128_CFB,
                    HashingAlgorithm::Sha256,
                )
            })
            .map_err(cmd("start policy session"))?
            .ok_or(TpmError::Unexpected {
                what: "missing session",
            })?;
        // Only one session of a command may encrypt the response.
        let (attributes, mask) = SessionAttributesBuilder::new()
            .with_encrypt(encrypt)
            .with_continue_session(true)
            .build();
        inner
            .ctx
            .tr_sess_set_attributes(session, attributes, mask)
            .map_err(cmd("set session attributes"))?;
        PolicySession::try_from(session).map_err(cmd("policy session"))
    }

    /// Seals `secret` (at most 128 bytes) to the application PCR's current value.
    pub fn seal(&self, secret: &[u8]) -> Result<SealedSecret, TpmError> {
        let pcr_value = self.read_pcr()?;
        let selection = self.selection()?;
        let mut inner = self.lock()?;
        let trial = Self::policy_session(&mut inner, SessionType::Trial, false)?;
        let pcr_digest =
            Digest::try_from(Sha256::digest(pcr_value).to_vec()).map_err(cmd("digest"))?;
        let policy = inner
            .ctx
            .execute_without_session(|c| {
                c.policy_pcr(trial, pcr_digest, selection)?;
                c.policy_get_digest(trial)
            })
            .map_err(cmd("compute PCR policy"));
        inner
            .ctx
            .flush_context(ObjectHandle::from(SessionHandle::from(AuthSession::from(
                trial,
            ))))
            .map_err(cmd("flush trial session"))?;
        let attributes = ObjectAttributesBuilder::new()
            .with_fixed_tpm(true)
            .with_fixed_parent(true)
            .with_no_da(true)
            .with_admin_with_policy(true)
            .with_user_with_auth(false)
            .build()
            .map_err(cmd("build sealed object attributes"))?;
        let public = PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::KeyedHash)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attributes)
            .with_auth_policy(policy?)
            .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
            .with_keyed_hash_unique_identifier(Digest::default())
            .build()
            .map_err(cmd("build sealed object"))?;
        let data = SensitiveData::try_from(secret.to_vec()).map_err(cmd("secret size"))?;
        let srk = inner.srk;
        let created = inner
            .ctx
            .create(srk, public, None, Some(data), None, None)
            .map_err(cmd("seal"))?;
        Ok(SealedSecret {
            private: created.out_private,
            public: created.out_public,
        })
    }

    /// Unseals a secret; refused by the TPM if the application PCR changed since sealing.
    pub fn unseal(&self, sealed: &SealedSecret) -> Result<Vec<u8>, TpmError> {
        let selection = self.selection()?;
        let mut inner = self.lock()?;
        let srk = inner.srk;
        let object = inner
            .ctx
            .load(srk, sealed.private.clone(), sealed.public.clone())
            .map_err(cmd("load sealed object"))?;
        let session = Self::policy_session(&mut inner, SessionType::Policy, true)?;
        let result = inner
            .ctx
            .execute_without_session(|c| c.policy_pcr(session, Digest::default(), selection))
            .map_err(cmd("policy PCR"))
            .and_then(|()| {
                inner
                    .ctx
                    .execute_with_session(Some(AuthSession::from(session)), |c| {
                        c.unseal(ObjectHandle::from(object))
                    })
                    .map_err(|source| TpmError::PolicyRefused { source })
            });
        let _ = inner
            .ctx
            .flush_context(ObjectHandle::from(SessionHandle::from(AuthSession::from(
                session,
            ))));
        let _ = inner.ctx.flush_context(ObjectHandle::from(object));
        Ok(result?.value().to_vec())
    }
}

/// Loads the persistent SRK, or creates and persists it under a password session (owner auth is
/// empty on a provisioned box), so that the salted session can be bound to it.
fn open_srk(ctx: &mut Context, handle: u32) -> Result<KeyHandle, TpmError> {
    let srk_handle = PersistentTpmHandle::new(handle).map_err(cmd("persistent handle"))?;
    if handle_exists(ctx, handle) {
        let object = ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::Persistent(srk_handle)))
            .map_err(cmd("open SRK"))?;
        Ok(KeyHandle::from(object))
    } else {
        let template = srk_template()?;
        ctx.execute_with_session(Some(AuthSession::Password), |c| {
            let primary = c
                .create_primary(Hierarchy::Owner, template, None, None, None, None)
                .map_err(cmd("create SRK"))?;
            let persisted = c
                .evict_control(
                    Provision::Owner,
                    ObjectHandle::from(primary.key_handle),
                    Persistent::Persistent(srk_handle),
                )
                .map_err(cmd("persist SRK"))?;
            c.flush_context(ObjectHandle::from(primary.key_handle))
                .map_err(cmd("flush SRK"))?;
            Ok::<_, TpmError>(KeyHandle::from(persisted))
        })
    }
}

/// Whether a persistent object or NV index exists (asked first, so that looking up a handle on a
/// fresh TPM does not make the TSS log errors).
fn handle_exists(ctx: &mut Context, handle: u32) -> bool {
    ctx.execute_without_session(|c| c.get_capability(CapabilityType::Handles, handle, 1))
        .is_ok_and(|(data, _)| match data {
            CapabilityData::Handles(list) => list.iter().any(|h| u32::from(*h) == handle),
            _ => false,
        })
}

fn open_counter(ctx: &mut Context, index: u32) -> Result<NvIndexHandle, TpmError> {
    let nv_index = NvIndexTpmHandle::new(index).map_err(cmd("NV index"))?;
    if handle_exists(ctx, index) {
        let object = ctx
            .execute_without_session(|c| c.tr_from_tpm_public(TpmHandle::NvIndex(nv_index)))
            .map_err(cmd("open NV counter"))?;
        return Ok(NvIndexHandle::from(object));
    }
    let attributes = NvIndexAttributesBuilder::new()
        .with_owner_write(true)
        .with_owner_read(true)
        .with_nv_index_type(NvIndexType::Counter)
        .build()
        .map_err(cmd("NV attributes"))?;
    let public = NvPublicBuilder::new()
        .with_nv_index(nv_index)
        .with_index_name_algorithm(HashingAlgorithm::Sha256)
        .with_index_attributes(attributes)
        .with_data_area_size(8)
        .build()
        .map_err(cmd("NV public"))?;
    let handle = ctx
        .nv_define_space(Provision::Owner, None, public)
        .map_err(cmd("define NV counter"))?;
    // A counter reads only after its first increment.
    ctx.nv_increment(NvAuth::Owner, handle)
        .map_err(cmd("initialise NV counter"))?;
    Ok(handle)
}

fn read_counter(ctx: &mut Context, handle: NvIndexHandle) -> Result<u64, TpmError> {
    let data = ctx
        .nv_read(NvAuth::Owner, handle, 8, 0)
        .map_err(cmd("read counter"))?;
    let bytes: [u8; 8] = data.value().try_into().map_err(|_| TpmError::Unexpected {
        what: "counter of the wrong size",
    })?;
    Ok(u64::from_be_bytes(bytes))
}

fn sign_error(key: &PublicKey, e: &TpmError) -> SignError {
    SignError {
        key_id: key.key_id(),
        reason: e.to_string(),
    }
}

impl Signer for Tpm {
    fn public_key(&self) -> PublicKey {
        self.event_public.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        self.sign_digest(SigningKeyKind::Event, Sha256::digest(message).into())
            .map_err(|e| sign_error(&self.event_public, &e))
    }
}

/// Which unrestricted key signs.
#[derive(Debug, Clone, Copy)]
enum SigningKeyKind {
    Event,
    Tls,
}

/// The TPM-held mTLS client key as a [`Signer`] (see [`Tpm::tls_signer`]).
#[derive(Debug, Clone)]
pub struct TpmTlsKey(Arc<Tpm>);

impl Signer for TpmTlsKey {
    fn public_key(&self) -> PublicKey {
        self.0.tls_public.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        self.0
            .sign_digest(SigningKeyKind::Tls, Sha256::digest(message).into())
            .map_err(|e| sign_error(&self.0.tls_public, &e))
    }
}

impl Quoter for Tpm {
    fn quote(&self, qualifying_data: &[u8]) -> Result<QuoteEvidence, SignError> {
        self.quote_pcr(qualifying_data)
            .map_err(|e| sign_error(&self.ak_public, &e))
    }
}

impl crate::ledger::GatewayKeys for Tpm {
    fn attestation_key(&self) -> Option<PublicKey> {
        Some(self.ak_public.clone())
    }

    fn bump_counter(&self, current: u64) -> Result<u64, SignError> {
        let found = self
            .increment_counter()
            .map_err(|e| sign_error(&self.event_public, &e))?;
        if found <= current {
            let e = TpmError::CounterRollback { current, found };
            return Err(sign_error(&self.event_public, &e));
        }
        Ok(found)
    }

    fn quoter(&self) -> Option<&dyn Quoter> {
        Some(self)
    }

    fn insecure(&self) -> bool {
        false
    }

    fn event_log(&self) -> EventLog {
        self.log()
    }

    fn app_pcr(&self) -> u8 {
        self.app_pcr
    }
}
