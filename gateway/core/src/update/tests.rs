#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::many_single_char_names,
    clippy::cast_possible_truncation,
    reason = "tests"
)]

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::pkcs8::EncodePublicKey as _;

use super::gpt::{Guid, Header, PartitionTable, crc32};
use super::tar::{BLOCK, BundleArchive, Member, Next};
use super::*;

fn key(seed: u8) -> (SigningKey, BundleKey) {
    let sk = SigningKey::from_slice(&[seed; 32]).unwrap();
    let pem = sk
        .verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    (sk.clone(), BundleKey::from_pem(&pem).unwrap())
}

fn sign(sk: &SigningKey, bytes: &[u8]) -> Vec<u8> {
    let digest: [u8; 32] = Sha256::digest(bytes).into();
    let sig: Signature = sk.sign_prehash(&digest).unwrap();
    sig.to_der().as_bytes().to_vec()
}

const RH: &str = "1111111111111111111111111111111122222222222222222222222222222222";

fn manifest_json(version: &str, roothash: &str, root_size: u64) -> String {
    let sha = hex::encode(Sha256::digest(b"root"));
    format!(
        r#"{{"format":"dosegate-bundle-1","version":"{version}","roothash":"{roothash}","pcr11":"{}",
 "files":{{"root.img":{{"sha256":"{sha}","size":{root_size}}},
          "root.verity":{{"sha256":"{}","size":6}},
          "uki.efi":{{"sha256":"{}","size":3}}}}}}"#,
        "ab".repeat(32),
        hex::encode(Sha256::digest(b"verity")),
        hex::encode(Sha256::digest(b"uki")),
    )
}

fn signed(version: &str) -> SignedManifest {
    let (sk, pk) = key(7);
    let m = manifest_json(version, RH, 4);
    verify_manifest(m.as_bytes(), &sign(&sk, m.as_bytes()), &pk).unwrap()
}

#[test]
fn accepts_a_manifest_signed_with_the_bundle_key() {
    let (sk, pk) = key(7);
    let m = manifest_json("0.1.0.1", RH, 4);
    let s = verify_manifest(m.as_bytes(), &sign(&sk, m.as_bytes()), &pk).unwrap();
    assert_eq!(s.manifest().version.to_string(), "0.1.0.1");
    assert_eq!(hex::encode(s.manifest().roothash), RH);
    assert_eq!(s.manifest().root.size, 4);
    assert_eq!(s.manifest().entry(BundleFile::Uki).size, 3);
}

#[test]
fn refuses_a_changed_manifest_or_another_signer() {
    let (sk, pk) = key(7);
    let (other, _) = key(8);
    let m = manifest_json("0.1.0.1", RH, 4);
    let sig = sign(&sk, m.as_bytes());
    let changed = m.replace("0.1.0.1", "0.1.0.9");
    assert_eq!(
        verify_manifest(changed.as_bytes(), &sig, &pk),
        Err(UpdateError::BadSignature)
    );
    assert_eq!(
        verify_manifest(m.as_bytes(), &sign(&other, m.as_bytes()), &pk),
        Err(UpdateError::BadSignature)
    );
    assert_eq!(
        verify_manifest(m.as_bytes(), b"not der", &pk),
        Err(UpdateError::BadSignature)
    );
    assert_eq!(
        verify_manifest(m.as_bytes(), &[0x30; 200], &pk)
            .unwrap_err()
            .code(),
        "bad-signature"
    );
}

#[test]
fn refuses_an_oversized_manifest_before_checking_anything() {
    let (_, pk) = key(7);
    let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
    assert!(matches!(
        verify_manifest(&big, &[], &pk),
        Err(UpdateError::ManifestTooLarge { len }) if len == MAX_MANIFEST_BYTES + 1
    ));
}

#[test]
fn refuses_unknown_fields_formats_and_bad_values() {
    let m = manifest_json("0.1.0", RH, 4);
    let extra = m.replacen('{', r#"{"extra":1,"#, 1);
    assert_eq!(
        Manifest::parse(extra.as_bytes()).unwrap_err().code(),
        "manifest-syntax"
    );
    let fmt = m.replace("dosegate-bundle-1", "dosegate-bundle-2");
    assert_eq!(
        Manifest::parse(fmt.as_bytes()).unwrap_err().code(),
        "unknown-format"
    );
    let ver = manifest_json("0.1.x", RH, 4);
    assert_eq!(
        Manifest::parse(ver.as_bytes()).unwrap_err().code(),
        "bad-version"
    );
    let upper = manifest_json("0.1.0", &RH.replace('1', "A"), 4);
    assert_eq!(
        Manifest::parse(upper.as_bytes()).unwrap_err().code(),
        "bad-hex"
    );
    let huge = manifest_json("0.1.0", RH, MAX_ROOT_BYTES + 1);
    assert!(matches!(
        Manifest::parse(huge.as_bytes()),
        Err(UpdateError::FileTooLarge {
            file: "root.img",
            ..
        })
    ));
}

#[test]
fn versions_compare_number_by_number_with_one_spelling() {
    let v = |s| Version::parse(s).unwrap();
    assert!(v("0.1.0.1") > v("0.1.0"));
    assert!(v("0.10.0") > v("0.9.9"));
    assert!(v("1") > v("0.999"));
    assert_eq!(v("0.1.0").to_string(), "0.1.0");
    for bad in [
        "",
        ".",
        "0..1",
        "01.0",
        "0.1.",
        "a",
        "1.2.3.4.5.6.7.8.9",
        "1234567890",
        "-1",
    ] {
        assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn anti_rollback_refuses_the_same_or_an_older_version() {
    let s = signed("0.1.0");
    assert!(check_newer(&s, &Version::parse("0.0.9").unwrap()).is_ok());
    for running in ["0.1.0", "0.1.0.1", "0.2"] {
        let err = check_newer(&s, &Version::parse(running).unwrap()).unwrap_err();
        assert_eq!(err.code(), "not-newer", "{running}");
    }
}

#[test]
fn file_check_needs_every_byte_and_the_right_digest() {
    let s = signed("0.1.0.1");
    let mut c = FileCheck::new(&s, BundleFile::Root, 4).unwrap();
    c.update(b"ro").unwrap();
    c.update(b"ot").unwrap();
    let v = c.finish().unwrap();
    assert_eq!((v.file(), v.size()), (BundleFile::Root, 4));

    assert_eq!(
        FileCheck::new(&s, BundleFile::Root, 5).unwrap_err().code(),
        "size-mismatch"
    );
    let mut long = FileCheck::new(&s, BundleFile::Root, 4).unwrap();
    assert_eq!(long.update(b"roots").unwrap_err().code(), "size-mismatch");
    let mut short = FileCheck::new(&s, BundleFile::Root, 4).unwrap();
    short.update(b"roo").unwrap();
    assert_eq!(short.finish().unwrap_err().code(), "size-mismatch");
    let mut wrong = FileCheck::new(&s, BundleFile::Root, 4).unwrap();
    wrong.update(b"rooT").unwrap();
    assert!(matches!(
        wrong.finish(),
        Err(UpdateError::DigestMismatch {
            file: "root.img",
            ..
        })
    ));
}

// --- tar

fn header(name: &str, size: u64, typeflag: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = typeflag;
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

#[test]
fn archive_reads_the_five_members_in_order_then_the_end() {
    let mut a = BundleArchive::new();
    for (m, size) in Member::ORDER.iter().zip([300u64, 70, 4096, 513, 1]) {
        let next = a.next_header(&header(m.name(), size, b'0')).unwrap();
        assert_eq!(
            next,
            Next::Entry {
                member: *m,
                size,
                padding: (512 - size % 512) % 512
            }
        );
    }
    assert_eq!(a.next_header(&[0; BLOCK]).unwrap(), Next::End);
}

#[test]
fn archive_refuses_path_tricks_links_and_disorder() {
    for (name, typeflag) in [
        ("../manifest.json", b'0'),
        ("/manifest.json", b'0'),
        ("./manifest.json", b'0'),
        ("manifest.json/", b'0'),
        ("root.img", b'0'),
        ("manifest.json", b'2'),
        ("manifest.json", b'1'),
        ("manifest.json", b'5'),
        ("manifest.json", b'L'),
        ("manifest.json", b'x'),
    ] {
        let err = BundleArchive::new()
            .next_header(&header(name, 10, typeflag))
            .unwrap_err();
        assert_eq!(err.code(), "archive", "{name} {typeflag}");
    }
    let mut bad_sum = header("manifest.json", 10, b'0');
    bad_sum[0] = b'M';
    assert_eq!(
        BundleArchive::new()
            .next_header(&bad_sum)
            .unwrap_err()
            .code(),
        "archive"
    );
    assert_eq!(
        BundleArchive::new()
            .next_header(&header("manifest.json", MAX_MANIFEST_BYTES + 1, b'0'))
            .unwrap_err()
            .code(),
        "file-too-large"
    );
    assert_eq!(
        BundleArchive::new()
            .next_header(&[0; BLOCK])
            .unwrap_err()
            .code(),
        "archive"
    );
    let mut a = BundleArchive::new();
    for m in Member::ORDER {
        a.next_header(&header(m.name(), 1, b'0')).unwrap();
    }
    assert!(a.next_header(&header("extra", 1, b'0')).is_err());
}

// --- GPT and slots

const SECTOR: u64 = 512;

fn guid(text: &str) -> Guid {
    let mut b = [0u8; 16];
    hex::decode_to_slice(text.replace('-', ""), &mut b).unwrap();
    Guid::from_text_bytes(b)
}

/// A 6-partition A/B disk as `os-image/steps/40-disk.sh` makes it, slot A holding `RH`.
fn disk(slot_sectors: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let esp = guid("c12a7328-f81f-11d2-ba4b-00a0c93ec93b");
    let linux = guid("0fc63daf-8483-4772-8e79-3d69d8477de4");
    let mut rh = [0u8; 32];
    hex::decode_to_slice(RH, &mut rh).unwrap();
    let (h1, h2) = super::halves(&rh);
    let parts = [
        (
            esp,
            guid("8a5b0e3d-45c1-4b4e-9d1b-d05e6a7e00e5"),
            100,
            "ESP",
        ),
        (ROOT_TYPE, partuuid_of(&h1), slot_sectors, "dosegate_0.1.0"),
        (VERITY_TYPE, partuuid_of(&h2), 20, "dosegate_0.1.0_verity"),
        (
            ROOT_TYPE,
            guid("8a5b0e3d-45c1-4b4e-9d1b-d05e6a7e00b2"),
            slot_sectors,
            "_empty",
        ),
        (
            VERITY_TYPE,
            guid("8a5b0e3d-45c1-4b4e-9d1b-d05e6a7e00b3"),
            20,
            "_empty",
        ),
        (
            linux,
            guid("8a5b0e3d-45c1-4b4e-9d1b-d05e6a7e0005"),
            50,
            "dosegate-state",
        ),
    ];
    let mut entries = vec![0u8; 128 * 128];
    let mut lba = 2048u64;
    for (i, (t, u, n, name)) in parts.iter().enumerate() {
        let e = &mut entries[i * 128..(i + 1) * 128];
        e[0..16].copy_from_slice(&t.to_disk());
        e[16..32].copy_from_slice(&u.to_disk());
        e[32..40].copy_from_slice(&lba.to_le_bytes());
        e[40..48].copy_from_slice(&(lba + n - 1).to_le_bytes());
        for (j, b) in name.bytes().enumerate() {
            e[56 + 2 * j] = b;
        }
        lba += n;
    }
    let last = lba + 100;
    let mk = |my: u64, alt: u64, entries_lba: u64| {
        let mut h = vec![0u8; 512];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&my.to_le_bytes());
        h[32..40].copy_from_slice(&alt.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(last - 34).to_le_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    };
    let (p, b) = (mk(1, last, 2), mk(last, 1, last - 32));
    (p, entries, b)
}

fn table(slot_sectors: u64) -> PartitionTable {
    let (p, e, b) = disk(slot_sectors);
    PartitionTable::new(
        Header::parse(&p).unwrap(),
        &e,
        Header::parse(&b).unwrap(),
        SECTOR,
    )
    .unwrap()
}

#[test]
fn crc32_matches_the_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn guid_disk_layout_swaps_the_first_three_fields() {
    let g = guid("4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
    assert_eq!(hex::encode(g.to_disk()), "e3bc684fcde8b14d96e7fbcaf984b709");
    assert_eq!(Guid::from_disk(g.to_disk()), g);
    assert_eq!(g.to_string(), "4f68bce3-e8cd-4db1-96e7-fbcaf984b709");
}

#[test]
fn reads_the_partitions_of_an_ab_disk() {
    let t = table(200);
    assert_eq!(t.partitions().len(), 6);
    let [a, b] = slots(&t).unwrap();
    assert_eq!(
        (a.root, a.verity, a.version.as_deref()),
        (2, 3, Some("0.1.0"))
    );
    assert_eq!((b.root, b.verity, b.version), (4, 5, None));
    assert_eq!(t.partition(4).unwrap().name, "_empty");
}

#[test]
fn refuses_a_table_whose_crc_or_backup_is_wrong() {
    let (p, mut e, b) = disk(200);
    e[200] ^= 1;
    let err = PartitionTable::new(
        Header::parse(&p).unwrap(),
        &e,
        Header::parse(&b).unwrap(),
        SECTOR,
    )
    .unwrap_err();
    assert_eq!(err.code(), "disk-layout");
    let (mut p2, _, _) = disk(200);
    p2[40] ^= 1;
    assert!(Header::parse(&p2).is_err());
    let (p3, e3, _) = disk(200);
    let h = Header::parse(&p3).unwrap();
    assert!(PartitionTable::new(h.clone(), &e3, h, SECTOR).is_err());
}

#[test]
fn plans_the_inactive_slot_and_names_it_by_the_new_root_hash() {
    let t = table(200);
    let mut running = [0u8; 32];
    hex::decode_to_slice(RH, &mut running).unwrap();
    let (sk, pk) = key(7);
    let new_rh = "33".repeat(16) + &"44".repeat(16);
    let m = manifest_json("0.1.0.1", &new_rh, 4);
    let s = verify_manifest(m.as_bytes(), &sign(&sk, m.as_bytes()), &pk).unwrap();
    let p = plan(&s, &t, &running, &Version::parse("0.1.0").unwrap(), 3).unwrap();
    assert_eq!((p.running.name, p.target.name), ('A', 'B'));
    assert_eq!(p.entry_name, "dosegate_0.1.0.1+3.efi");
    assert_eq!(p.labels.0, "dosegate_0.1.0.1");
    assert_eq!(
        p.uuids.0.to_string(),
        "33333333-3333-3333-3333-333333333333"
    );
    assert_eq!(
        p.uuids.1.to_string(),
        "44444444-4444-4444-4444-444444444444"
    );
    assert_eq!(p.root_extent, ((2048 + 100 + 200 + 20) * 512, 200 * 512));
    assert_eq!(p.replaced, None);

    // The table renamed as the plan says, encoded and read back, now runs slot B.
    let renamed = t
        .with_identity(p.target.root, p.uuids.0, &p.labels.0)
        .unwrap()
        .with_identity(p.target.verity, p.uuids.1, &p.labels.1)
        .unwrap();
    let w = renamed.encode();
    let back = PartitionTable::new(
        Header::parse(&w[3].bytes).unwrap(),
        &w[2].bytes,
        Header::parse(&w[1].bytes).unwrap(),
        SECTOR,
    )
    .unwrap();
    assert_eq!(back, renamed);
    let mut new_running = [0u8; 32];
    hex::decode_to_slice(&new_rh, &mut new_running).unwrap();
    let m2 = manifest_json("0.1.0.2", RH.replace('1', "5").as_str(), 4);
    let s2 = verify_manifest(m2.as_bytes(), &sign(&sk, m2.as_bytes()), &pk).unwrap();
    let p2 = plan(
        &s2,
        &back,
        &new_running,
        &Version::parse("0.1.0.1").unwrap(),
        1,
    )
    .unwrap();
    assert_eq!((p2.running.name, p2.target.name), ('B', 'A'));
    assert_eq!(p2.replaced.as_deref(), Some("0.1.0"));
}

#[test]
fn plan_refuses_unknown_running_slot_same_root_misfit_and_bad_tries() {
    let t = table(200);
    let mut running = [0u8; 32];
    hex::decode_to_slice(RH, &mut running).unwrap();
    let (sk, pk) = key(7);
    let v = Version::parse("0.1.0").unwrap();
    let other = "33".repeat(32);
    let m = manifest_json("0.1.0.1", &other, 4);
    let s = verify_manifest(m.as_bytes(), &sign(&sk, m.as_bytes()), &pk).unwrap();
    assert_eq!(
        plan(&s, &t, &[9; 32], &v, 3).unwrap_err().code(),
        "running-slot-unknown"
    );
    assert_eq!(
        plan(&s, &t, &running, &v, 0).unwrap_err().code(),
        "bad-tries"
    );
    assert_eq!(
        plan(&s, &t, &running, &v, 10).unwrap_err().code(),
        "bad-tries"
    );
    let same = manifest_json("0.1.0.1", RH, 4);
    let s_same = verify_manifest(same.as_bytes(), &sign(&sk, same.as_bytes()), &pk).unwrap();
    assert_eq!(
        plan(&s_same, &t, &running, &v, 3).unwrap_err().code(),
        "same-root"
    );
    let big = manifest_json("0.1.0.1", &other, 200 * 512 + 1);
    let s_big = verify_manifest(big.as_bytes(), &sign(&sk, big.as_bytes()), &pk).unwrap();
    assert!(matches!(
        plan(&s_big, &t, &running, &v, 3),
        Err(UpdateError::DoesNotFit {
            file: "root.img",
            partition: 4,
            ..
        })
    ));
    assert_eq!(
        plan(&s, &t, &running, &Version::parse("0.1.0.1").unwrap(), 3)
            .unwrap_err()
            .code(),
        "not-newer"
    );
}

#[test]
fn commit_needs_each_file_verified_once() {
    let t = table(200);
    let mut running = [0u8; 32];
    hex::decode_to_slice(RH, &mut running).unwrap();
    let (sk, pk) = key(7);
    let m = manifest_json("0.1.0.1", &"33".repeat(32), 4);
    let s = verify_manifest(m.as_bytes(), &sign(&sk, m.as_bytes()), &pk).unwrap();
    let p = plan(&s, &t, &running, &Version::parse("0.1.0").unwrap(), 3).unwrap();
    let mut root = FileCheck::new(&s, BundleFile::Root, 4).unwrap();
    root.update(b"root").unwrap();
    let root = root.finish().unwrap();
    assert!(p.clone().commit(&[root, root]).is_err());
    let mut verity = FileCheck::new(&s, BundleFile::Verity, 6).unwrap();
    verity.update(b"verity").unwrap();
    let mut uki = FileCheck::new(&s, BundleFile::Uki, 3).unwrap();
    uki.update(b"uki").unwrap();
    let done = p
        .commit(&[root, verity.finish().unwrap(), uki.finish().unwrap()])
        .unwrap();
    assert_eq!(done.plan().target.name, 'B');
}

#[test]
fn empty_slot_uuids_are_fixed_and_never_a_root_hash_half() {
    assert_eq!(empty_uuid(4), empty_uuid(4));
    assert_ne!(empty_uuid(4), empty_uuid(5));
    assert_eq!(empty_uuid(4).text_bytes()[6] >> 4, 4);
}
